package fleet

import (
	"context"
	"strings"
	"testing"

	"github.com/edgecache/edgecache/internal/testkit"
)

func TestOpenPing(t *testing.T) {
	r := testkit.StartRedis(t, testkit.RedisArgs("--requirepass", "secret"))
	f, err := Open(Config{Addrs: []string{r.Addr}, Password: "secret", Node: "a"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Ping(context.Background()); err != nil {
		t.Fatalf("ping: %v", err)
	}
	bad, _ := Open(Config{Addrs: []string{r.Addr}, Password: "wrong", Node: "a"}, nil)
	defer bad.Close()
	if err := bad.Ping(context.Background()); err == nil {
		t.Fatal("ping with a wrong password succeeded")
	}
}

func TestConfigRefused(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Node: "a"}, "no redis address"},
		{Config{Addrs: []string{"localhost"}, Node: "a"}, "want host:port"},
		{Config{Addrs: []string{"127.0.0.1:1"}, Node: "a", Prefix: "x{"}, "must not contain"},
		{Config{Addrs: []string{"127.0.0.1:1"}, Node: "a", Username: "u"}, "needs a password"},
	} {
		if _, err := Open(c.cfg, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
}
