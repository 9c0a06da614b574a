package gateway_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/marketcast/marketcast/configs"
	"github.com/marketcast/marketcast/protocol"
)

// TestPublishZonelessTimes: the seed's back end stamps market data with
// datetime.utcnow().isoformat(), a time without a zone. The publish API
// reads it in feed.publish_time_zone (UTC by default), and sends it in UTC:
// the same instant, not shifted, not refused. Configured for exchange time
// it reads the same text eight hours earlier, as it should.
func TestPublishZonelessTimes(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Millisecond)
	seed := now.Format("2006-01-02T15:04:05.000000") // Python's isoformat(): microseconds, no zone
	for _, c := range []struct {
		zone string
		want time.Time
	}{{"UTC", now}, {"Asia/Shanghai", now.Add(-8 * time.Hour)}} {
		ts := newTestServer(t, func(cfg *configs.Config) { cfg.Feed.PublishTimeZone = c.zone })
		status, body := ts.post(ts.publisher(), `{"channel":"tick","symbol":"SHFE.rb2405","data":{"last_price":"4000.0",`+
			`"bid_price":"3999.0","ask_price":"4001.0","volume":"1000","timestamp":"`+seed+`"}}`)
		if status != http.StatusOK {
			t.Fatalf("%s: %d %v", c.zone, status, body)
		}
		ev := ts.hub.Last(protocol.TopicKey(protocol.Tick, "SHFE.rb2405"))
		if got := string(ev.Message().Data); !strings.Contains(got, `"update_time":"`+c.want.Format(protocol.TimeLayout)+`"`) {
			t.Fatalf("publish_time_zone %s: %s; want update_time %s", c.zone, got, c.want.Format(protocol.TimeLayout))
		}
	}
	// Stamped a minute ahead of the server's clock: refused, saying why.
	ts := newTestServer(t, nil)
	status, body := ts.post(ts.publisher(), `{"channel":"tick","symbol":"SHFE.rb2405","data":{"last_price":"4000.0","timestamp":"`+
		now.Add(time.Minute).Format("2006-01-02T15:04:05")+`"}}`)
	if status != http.StatusBadRequest || !strings.Contains(body["error"].(map[string]any)["message"].(string), "feed.max_time_ahead") {
		t.Fatalf("a minute ahead: %d %v", status, body)
	}
}
