package fleet_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgecache/edgecache/internal/testkit"
)

// A failing hot URL spread over two proxies under the fleet lock (lock_age
// and lock_timeout 1m, as Caddyfile.example): the fill that stores nothing
// on one proxy wakes the other's waiters with that outcome, at once, and
// its 500 with it (the lock's release carries it), rather than the fleet
// handing the lock on one request at a time: 50 clients answered within
// the backend's time and a quarter, at most 2 backend requests.
func TestFailingHotURLAcrossFleet(t *testing.T) {
	r := testkit.StartRedis(t)
	const backendTime = 2 * time.Second
	be := testkit.NewBackend(t, func(w http.ResponseWriter, r *http.Request, n int64) {
		if strings.HasPrefix(r.URL.Path, "/warm") {
			return
		}
		time.Sleep(backendTime) // a failing render
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, "render failed")
	})
	ps := startFleet(t, 2, []string{r.Addr}, fleetOptions{Origin: be.Addr(), Handler: "lock_age 1m\n\t\tlock_timeout 1m"})
	for _, p := range ps {
		p.mustGet(t, "/warm")
	}
	const path = "/webgateway/render_image/5/0/0/"
	var mu sync.Mutex
	var took []time.Duration
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 50 {
		wg.Go(func() {
			<-start
			begin := time.Now()
			res, err := ps[i%2].get(path)
			mu.Lock()
			defer mu.Unlock()
			took = append(took, time.Since(begin))
			if err != nil || res.status != http.StatusInternalServerError || string(res.body) != "render failed" {
				t.Errorf("%s: %v %d %.60q, want the backend's 500", ps[i%2].Name, err, res.status, res.body)
			}
		})
	}
	close(start)
	wg.Wait()
	slices.Sort(took)
	n := be.RequestsFor(path)
	t.Logf("50 clients on 2 proxies: median %v, last %v; %d backend requests",
		took[len(took)/2].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), n)
	if last := took[len(took)-1]; last > backendTime+backendTime/4 {
		t.Errorf("the last client was answered after %v, want within %v", last, backendTime+backendTime/4)
	}
	if n > 2 {
		t.Errorf("%d backend requests, want at most 2", n)
	}
}
