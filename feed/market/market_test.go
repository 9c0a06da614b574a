package market

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/marketcast/marketcast/protocol"
)

func TestCatalogIsBoundedAndSorted(t *testing.T) {
	c := NewCatalog(3)
	if got := c.Sorted(); got == nil || len(got) != 0 {
		t.Fatalf("empty catalogue lists %v; want []", got)
	}
	for _, s := range []string{"b", "a", "c", "a"} {
		if err := c.Add(s); err != nil {
			t.Fatal(err)
		}
	}
	err := c.Add("d")
	if !errors.Is(err, protocol.ErrRejected) || !strings.Contains(err.Error(), "limits.max_symbols") {
		t.Fatalf("a fourth symbol: %v; want a rejection naming the limit", err)
	}
	if got := c.Sorted(); fmt.Sprint(got) != "[a b c]" || c.Len() != 3 || !c.Has("b") || c.Has("d") {
		t.Fatalf("catalogue %v", got)
	}
}
