package caddymodule

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/edgecache/edgecache/internal/adminapi"
)

// Paths of the edge_cache admin API (admin.api.edge_cache).
const (
	adminPurgePath = "/edge_cache/purge"
	adminKeysPath  = "/edge_cache/keys"
)

// cacheKeysPageSize is how many keys cache-keys asks for at a time.
const cacheKeysPageSize = 1000

func init() {
	caddycmd.RegisterCommand(purgeCommand)
	caddycmd.RegisterCommand(cacheKeysCommand)
}

// adminFlags adds the flags locating the admin API, as `caddy stop` has them.
func adminFlags(cmd *cobra.Command) {
	cmd.Flags().String("address", "", "The address of the admin API, if not the default (localhost:2019 or $CADDY_ADMIN); unix/<path> for a socket")
	cmd.Flags().StringP("config", "c", "", "Configuration file to read the admin address from, if --address is not used")
	cmd.Flags().StringP("adapter", "a", "", "Name of config adapter to apply (when --config is used)")
}

var purgeCommand = caddycmd.Command{
	Name:  "purge",
	Usage: "[--address <interface>] [--zone <name>] (--key <key> | --prefix <prefix> | --all)",
	Short: "Removes entries from the edge cache of a running instance",
	Long: `
Removes cached entries through the admin API of a running edgecache:
one entry by its key (--key, the request URI as cached), every entry whose
key starts with a prefix (--prefix), or every entry (--all). Exactly one of
the three is required. It prints how many entries were removed: 0 when no
entry matched.

A key or prefix is given as cache-keys prints it: as it is, or Go-quoted
when it is not printable UTF-8 text or starts with a double quote
("/a\xff"; quote it for the shell: --key '"/a\xff"').

With --zone only that cache zone is purged; without it, every zone.

In a fleet (a shared block), the purge also removes the entries from Redis
and reaches every other proxy through the fleet's event log within a
second; it prints how many values it removed from Redis. A zone that says
shared off is purged on this proxy only. If Redis cannot be reached, this
proxy's entries are purged all the same and the command fails, saying so:
purge again once Redis answers.

The admin API is reached at --address, or at the admin address of the given
--config, or at the default (localhost:2019, or $CADDY_ADMIN).`,
	CobraFunc: func(cmd *cobra.Command) {
		adminFlags(cmd)
		cmd.Flags().StringP("zone", "z", "", "Cache zone to purge (default every zone)")
		cmd.Flags().StringP("key", "k", "", "Purge the entry with this key")
		cmd.Flags().StringP("prefix", "p", "", "Purge every entry whose key starts with this prefix")
		cmd.Flags().Bool("all", false, "Purge every entry")
		cmd.MarkFlagsOneRequired("key", "prefix", "all")
		cmd.MarkFlagsMutuallyExclusive("key", "prefix", "all")
		cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdPurge)
	},
}

var cacheKeysCommand = caddycmd.Command{
	Name:  "cache-keys",
	Usage: "--zone <name> [--prefix <prefix>] [--limit <n>] [--address <interface>]",
	Short: "Lists the keys stored in an edge cache zone of a running instance",
	Long: `
Prints the keys of the entries of a cache zone, one per line, asking the
admin API of a running edgecache page by page. --prefix keeps only the keys
starting with it; --limit stops after that many keys.

A key that is not printable UTF-8 text (a request URI may hold any byte),
or that starts with a double quote, is printed Go-quoted ("/a\xff"), so
that no two keys print alike; purge --key accepts it back as printed.

The admin API is reached at --address, or at the admin address of the given
--config, or at the default (localhost:2019, or $CADDY_ADMIN).`,
	CobraFunc: func(cmd *cobra.Command) {
		adminFlags(cmd)
		cmd.Flags().StringP("zone", "z", "", "Cache zone to list (required)")
		cmd.Flags().StringP("prefix", "p", "", "List only the keys starting with this prefix")
		cmd.Flags().IntP("limit", "n", 0, "List at most this many keys (default all)")
		cmd.MarkFlagRequired("zone")
		cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdCacheKeys)
	},
}

// purgeRequest is the body of POST /edge_cache/purge.
type purgeRequest struct {
	Zone   string `json:"zone,omitempty"`
	Key    string `json:"key,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	All    bool   `json:"all,omitempty"`
}

type purgeResponse struct {
	Purged int `json:"purged"`
	// Shared is how many values the purge removed from the fleet's Redis;
	// absent when the proxy has no shared block or the zone is not shared.
	Shared *int `json:"shared,omitempty"`
}

// keysResponse is the body of GET /edge_cache/keys.
type keysResponse struct {
	Keys []string `json:"keys"`
	Next string   `json:"next"`
}

func cmdPurge(fl caddycmd.Flags) (int, error) {
	return runPurge(context.Background(), fl, os.Stdout)
}

func runPurge(ctx context.Context, fl caddycmd.Flags, stdout io.Writer) (int, error) {
	req := purgeRequest{Zone: fl.String("zone"), Key: fl.String("key"), Prefix: fl.String("prefix"), All: fl.Bool("all")}
	chosen := 0
	for _, name := range []string{"key", "prefix", "all"} {
		if fl.Changed(name) {
			chosen++
		}
	}
	switch {
	case chosen != 1:
		return caddy.ExitCodeFailedStartup, errors.New("give exactly one of --key, --prefix or --all")
	case fl.Changed("key") && req.Key == "":
		return caddy.ExitCodeFailedStartup, errors.New("--key is empty")
	case fl.Changed("prefix") && req.Prefix == "":
		return caddy.ExitCodeFailedStartup, errors.New("--prefix is empty: use --all to purge everything")
	case fl.Changed("all") && !req.All:
		return caddy.ExitCodeFailedStartup, errors.New("--all=false purges nothing")
	}
	client, err := adminClientFromFlags(fl)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	var resp purgeResponse
	if err := client.do(ctx, http.MethodPost, adminPurgePath, req, &resp); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("purging: %v", err)
	}
	zone := "every zone"
	if req.Zone != "" {
		zone = "zone " + req.Zone
	}
	if resp.Shared != nil {
		fmt.Fprintf(stdout, "purged %d entries from %s, and %d values from the fleet's Redis; the other proxies purge theirs within a second\n", resp.Purged, zone, *resp.Shared)
	} else {
		fmt.Fprintf(stdout, "purged %d entries from %s\n", resp.Purged, zone)
	}
	return caddy.ExitCodeSuccess, nil
}

func cmdCacheKeys(fl caddycmd.Flags) (int, error) {
	return runCacheKeys(context.Background(), fl, os.Stdout)
}

func runCacheKeys(ctx context.Context, fl caddycmd.Flags, stdout io.Writer) (int, error) {
	zone, prefix := fl.String("zone"), fl.String("prefix")
	limit, err := fl.GetInt("limit")
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if zone == "" {
		return caddy.ExitCodeFailedStartup, errors.New("no zone: give one with --zone")
	}
	if limit < 0 {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--limit %d: must not be negative", limit)
	}
	client, err := adminClientFromFlags(fl)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}

	out := bufio.NewWriter(stdout)
	defer out.Flush()
	listed := 0
	for after := ""; ; {
		query := url.Values{"zone": {zone}, "limit": {strconv.Itoa(cacheKeysPageSize)}}
		if after != "" {
			query.Set("after", after)
		}
		if prefix != "" {
			// a server may filter by itself; the keys are filtered here anyway
			query.Set("prefix", prefix)
		}
		var page keysResponse
		if err := client.do(ctx, http.MethodGet, adminKeysPath+"?"+query.Encode(), nil, &page); err != nil {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("listing keys: %v", err)
		}
		for _, key := range page.Keys {
			if !hasKeyPrefix(key, prefix) {
				continue
			}
			fmt.Fprintln(out, key)
			listed++
			if listed == limit {
				return caddy.ExitCodeSuccess, out.Flush()
			}
		}
		if page.Next == "" {
			return caddy.ExitCodeSuccess, out.Flush()
		}
		if page.Next == after {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("listing keys: the admin API returned the same page again (next %q)", after)
		}
		after = page.Next
	}
}

// hasKeyPrefix reports whether a key starts with a prefix, both in text form.
func hasKeyPrefix(key, prefix string) bool {
	k, err1 := parseKeyText(key)
	p, err2 := parseKeyText(prefix)
	return err1 == nil && err2 == nil && strings.HasPrefix(k, p)
}

// adminClient calls the admin API of a running instance, over TCP or a
// unix socket, as `caddy stop` and `caddy reload` do.
type adminClient struct {
	address string // as given, for messages
	origin  string
	tcp     bool
	client  *http.Client
}

func adminClientFromFlags(fl caddycmd.Flags) (*adminClient, error) {
	address, err := caddycmd.DetermineAdminAPIAddress(fl.String("address"), nil, fl.String("config"), fl.String("adapter"))
	if err != nil {
		return nil, fmt.Errorf("finding the admin API address: %v", err)
	}
	return newAdminClient(address)
}

func newAdminClient(address string) (*adminClient, error) {
	addr, err := caddy.ParseNetworkAddress(address)
	if err != nil {
		return nil, fmt.Errorf("admin address %q: %v", address, err)
	}
	if addr.PortRangeSize() > 1 {
		return nil, fmt.Errorf("admin address %q: a port range is not an address", address)
	}
	c := &adminClient{address: address}
	var network, dialAddr string
	switch {
	case addr.IsUnixNetwork():
		// the origin is unused on a socket but must be a valid local host
		c.origin = "http://127.0.0.1"
		// drop the socket's permission bits (unix//path|0220)
		path, _, _ := strings.Cut(addr.Host, "|")
		if path == "" {
			return nil, fmt.Errorf("admin address %q: no socket path", address)
		}
		network, dialAddr = addr.Network, path
	case addr.IsFdNetwork():
		return nil, fmt.Errorf("admin address %q: a file descriptor cannot be reached from another process", address)
	case !strings.HasPrefix(addr.Network, "tcp"):
		return nil, fmt.Errorf("admin address %q: network %s: want tcp or unix", address, addr.Network)
	default:
		c.origin = "http://" + addr.JoinHostPort(0)
		c.tcp = true
		network, dialAddr = addr.Network, addr.JoinHostPort(0)
	}
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	c.client = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, network, dialAddr)
		},
	}}
	return c, nil
}

// do sends a request with body (if not nil) as JSON and decodes the JSON
// response into out. An error response's {"error": ...} becomes the error.
func (c *adminClient) do(ctx context.Context, method, uri string, body, out any) error {
	var reqBody io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		reqBody = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.origin+uri, reqBody)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", adminapi.CLIUserAgent+"/"+edgecacheVersion())
	if c.tcp {
		// the admin API checks the origin of requests
		req.Header.Set("Origin", c.origin)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return fmt.Errorf("cannot reach the admin API at %s (is edgecache running there? see --address): %v", c.address, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the admin API's answer: %v", err)
	}
	path, _, _ := strings.Cut(uri, "?")
	switch {
	case resp.StatusCode == http.StatusNotFound && !isJSONError(data):
		return fmt.Errorf("the admin API at %s has no %s endpoint (HTTP 404): is it an edgecache with the edge_cache app?", c.address, path)
	case resp.StatusCode >= 400:
		var apiErr struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(data, &apiErr) == nil && apiErr.Error != "" {
			return fmt.Errorf("%s (HTTP %d)", apiErr.Error, resp.StatusCode)
		}
		return fmt.Errorf("HTTP %s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("unexpected answer from %s %s (HTTP %d): %v", method, path, resp.StatusCode, err)
	}
	return nil
}

// isJSONError reports whether an error body is the API's own JSON error,
// as opposed to a plain not-found page.
func isJSONError(data []byte) bool {
	var apiErr struct {
		Error string `json:"error"`
	}
	return json.Unmarshal(data, &apiErr) == nil && apiErr.Error != ""
}
