package fleet

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// Config says how a proxy reaches the fleet's Redis.
type Config struct {
	// Addrs: one address is a single node; several are Redis Cluster seeds.
	Addrs []string
	// Username and Password authenticate (Redis ACL; a password alone is
	// requirepass's "default" user).
	Username, Password string
	// TLS connects with TLS, verifying the server's certificate.
	TLS bool
	// Prefix starts every key the fleet writes; fleets with different
	// prefixes never read each other's values. Default DefaultPrefix.
	Prefix string
	// Timeout bounds every Redis call a request makes: a slower answer
	// counts as a miss. Default DefaultTimeout.
	Timeout time.Duration
	// EntryMax is the largest body stored in Redis; larger ones stay in
	// the proxy's own tiers. Default DefaultEntryMax.
	EntryMax int64
	// Node is this proxy's name in logs, metrics and the fleet list.
	// Default: the host name.
	Node string
	// EventRetention is how long the event log keeps an event. Default
	// DefaultEventRetention.
	EventRetention time.Duration
}

// Defaults of Config.
const (
	DefaultPrefix   = "edgecache:"
	DefaultTimeout  = 100 * time.Millisecond
	DefaultEntryMax = 8 << 20
)

// WithDefaults fills the unset fields.
func (c Config) WithDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.EntryMax <= 0 {
		c.EntryMax = DefaultEntryMax
	}
	if c.Node == "" {
		c.Node, _ = os.Hostname()
	}
	if c.EventRetention <= 0 {
		c.EventRetention = DefaultEventRetention
	}
	return c
}

// Validate reports the first problem of a configuration (after
// WithDefaults).
func (c Config) Validate() error {
	if len(c.Addrs) == 0 {
		return errors.New("no redis address")
	}
	for _, a := range c.Addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			return fmt.Errorf("redis address %q: want host:port", a)
		}
	}
	if c.Node == "" {
		return errors.New("no node name, and the host name is unknown")
	}
	if c.Password == "" && c.Username != "" {
		return errors.New("a username needs a password")
	}
	return nil
}
