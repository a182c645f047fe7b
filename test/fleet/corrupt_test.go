package fleet_test

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// A value damaged in Redis is a miss, counted, and never served.
func TestCorruptValueIsAMiss(t *testing.T) {
	r := testkit.StartRedis(t)
	o := newOrigin(t, 0)
	ps := startFleet(t, 2, []string{r.Addr}, fleetOptions{Origin: o.Addr()})
	const path = "/webgateway/render_thumbnail/7/"
	redisKey := "edgecache:{default:" + path + "}"
	if res := ps[0].mustGet(t, path); res.cache != "MISS" {
		t.Fatalf("first request: %s", res.cache)
	}
	testkit.Eventually(t, 5*time.Second, func() string {
		if out, _ := r.CLI("EXISTS", redisKey); out != "1" {
			return "the entry is not in Redis"
		}
		return ""
	})
	// One byte of the body, near the end of the value, overwritten.
	size, err := r.CLI("STRLEN", redisKey)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(size)
	if out, err := r.CLI("SETRANGE", redisKey, strconv.Itoa(n-10), "#"); err != nil {
		t.Fatalf("SETRANGE: %v %s", err, out)
	}
	res := ps[1].mustGet(t, path)
	if res.cache != "MISS" || !bytes.Equal(res.body, o.body(path)) {
		t.Fatalf("damaged value: %s %q, want a MISS with the origin's body", res.cache, res.body[len(res.body)-20:])
	}
	if got := o.RequestsFor(path); got != 2 {
		t.Errorf("%d origin requests, want 2 (the damaged value fetched again)", got)
	}
	if c := ps[1].metric(t, "edgecache_shared_corrupt_total"); c != 1 {
		t.Errorf("edgecache_shared_corrupt_total %v, want 1", c)
	}
	// The second proxy's fill replaced it in Redis.
	testkit.Eventually(t, 5*time.Second, func() string {
		if out, _ := r.CLI("GETRANGE", redisKey, strconv.Itoa(n-10), strconv.Itoa(n-10)); out == "#" {
			return "the damaged value is still in Redis"
		}
		return ""
	})
}
