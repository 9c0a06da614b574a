package gateway_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/marketcast/marketcast/protocol"
)

// TestNotificationsCannotTakeProtocolTypes is finding 15 of the second
// security test: a notification published with type "auth_response" and
// {"status":"success","user_id":"admin"} reached the JS client as an
// auth_response event. Every protocol message type (and the JS client's
// event names) is refused with 400; a type of one's own still passes and
// arrives as published.
func TestNotificationsCannotTakeProtocolTypes(t *testing.T) {
	ts := newTestServer(t, nil)
	for _, typ := range append(protocol.MessageTypes, "AUTH_RESPONSE", "Market_Data") {
		status, body := ts.post(ts.publisher(), fmt.Sprintf(
			`{"channel":"notifications","user_id":"victim","type":%q,"data":{"status":"success","user_id":"admin"}}`, typ))
		if status != http.StatusBadRequest {
			t.Fatalf("notification of type %q: %d %v; want 400", typ, status, body)
		}
	}
	c := ts.login("victim")
	mustSend(t, c, map[string]any{"type": "subscribe", "channel": "notifications", "user_id": "victim"})
	mustType(t, c, "subscribe_response")
	if status, body := ts.post(ts.publisher(),
		`{"channel":"notifications","user_id":"victim","type":"margin_call","data":{"level":"95%"}}`); status != http.StatusOK {
		t.Fatalf("a type of one's own: %d %v", status, body)
	}
	if m := mustType(t, c, "margin_call"); m.DataMap()["level"] != "95%" {
		t.Fatalf("got %s", m.Raw)
	}
}
