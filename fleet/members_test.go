package fleet

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// TestMembers: each proxy's heartbeat puts it in the list, expiring after
// HeartbeatTTL, with how far behind the log it is.
func TestMembers(t *testing.T) {
	r := testkit.StartRedis(t)
	testMembers(t, []string{r.Addr}, func(key string) int {
		out, err := r.CLI("TTL", key)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(out)
		return n
	})
}

func TestMembersOnCluster(t *testing.T) {
	c := testkit.StartRedisCluster(t, 3)
	testMembers(t, c.Addrs(), nil)
}

func testMembers(t *testing.T, addrs []string, ttl func(key string) int) {
	ctx := context.Background()
	a := openFleet(t, Config{Addrs: addrs, Node: "a"}, nil)
	b := openFleet(t, Config{Addrs: addrs, Node: "b"}, nil)
	if m, err := a.Members(ctx); err != nil || len(m) != 0 {
		t.Fatalf("an empty fleet: %v %v", m, err)
	}
	foA, _ := follow(t, a, nil)
	stopA := a.Heartbeat(func() Member {
		return Member{Version: "v1", Zones: []string{"thumbs"}, LastEvent: foA.Position().ID}
	})
	defer stopA()
	// b stopped reading at the log's end, then 3 events came.
	from := foA.Position()
	for range 3 {
		if _, err := a.Publish(ctx, Event{Zone: "thumbs", Kind: KindRefresh, Key: "/x"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Announce(ctx, Member{Version: "v1", LastEvent: from.ID}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, func() string {
		m, err := b.Members(ctx)
		switch {
		case err != nil:
			return err.Error()
		case len(m) != 2 || m[0].Node != "a" || m[1].Node != "b":
			return "members " + jsonOf(m)
		case m[0].Behind != 0 || m[0].Version != "v1" || len(m[0].Zones) != 1 || m[0].LastEvent == from.ID:
			return "a caught up: " + jsonOf(m[0])
		case m[1].Behind != 3 || m[1].Zones == nil || time.Since(m[1].Seen) > HeartbeatTTL:
			return "b 3 behind: " + jsonOf(m[1])
		}
		return ""
	})
	if ttl != nil {
		if n := ttl(a.keys.member("a")); n <= 0 || n > int(HeartbeatTTL/time.Second) {
			t.Errorf("a's heartbeat expires in %d s", n)
		}
	}
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
