package cli

import (
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
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/edgecache/edgecache/internal/adminapi"
)

// adminAddressHelp ends the help of each command that talks to a running
// proxy: it says where adminFlags lead.
const adminAddressHelp = `

The admin API is reached at --address, or at the admin address of the given
--config, or at the default (localhost:2019, or $CADDY_ADMIN).`

// adminRun is the RunE of a command that talks to a running proxy and
// prints to stdout.
func adminRun(run func(context.Context, caddycmd.Flags, io.Writer) (int, error)) func(*cobra.Command, []string) error {
	return caddycmd.WrapCommandFuncForCobra(func(fl caddycmd.Flags) (int, error) {
		return run(context.Background(), fl, os.Stdout)
	})
}

// adminFlags adds the flags locating the admin API, as `caddy stop` has them.
func adminFlags(cmd *cobra.Command) {
	cmd.Flags().String("address", "", "The address of the admin API, if not the default (localhost:2019 or $CADDY_ADMIN); unix/<path> for a socket")
	cmd.Flags().StringP("config", "c", "", "Configuration file to read the admin address from, if --address is not used")
	cmd.Flags().StringP("adapter", "a", "", "Name of config adapter to apply (when --config is used)")
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
// answer into out.
func (c *adminClient) do(ctx context.Context, method, uri string, body, out any) error {
	var reqBody io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		reqBody = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, uri, reqBody)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return c.send(req, out)
}

// newRequest is a request to the admin API for uri (path and query).
func (c *adminClient) newRequest(ctx context.Context, method, uri string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.origin+uri, body)
	if err != nil {
		return nil, err
	}
	// The status page says who purged: the CLI, by this.
	req.Header.Set("User-Agent", adminapi.CLIUserAgent)
	if c.tcp {
		// the admin API checks the origin of requests
		req.Header.Set("Origin", c.origin)
	}
	return req, nil
}

// send sends req and decodes the JSON answer into out. An error answer's
// {"error": ...} becomes the error.
func (c *adminClient) send(req *http.Request, out any) error {
	resp, err := c.client.Do(req)
	if err != nil {
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return unreachableError{address: c.address, err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("reading the admin API's answer: %v", err)
	}
	path := req.URL.Path
	switch {
	case resp.StatusCode == http.StatusNotFound && errorMessage(data) == "":
		return fmt.Errorf("the admin API at %s has no %s endpoint (HTTP 404): is it an edgecache with the edge_cache app?", c.address, path)
	case resp.StatusCode >= 400:
		if msg := errorMessage(data); msg != "" {
			return fmt.Errorf("%s (HTTP %d)", msg, resp.StatusCode)
		}
		return fmt.Errorf("HTTP %s: %s", resp.Status, strings.TrimSpace(string(data)))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("unexpected answer from %s %s (HTTP %d): %v", req.Method, path, resp.StatusCode, err)
	}
	return nil
}

// unreachableError is an admin API that did not answer: no proxy runs
// there, or not with its admin API at that address.
type unreachableError struct {
	address string
	err     error
}

func (e unreachableError) Error() string {
	return fmt.Sprintf("cannot reach the admin API at %s (is edgecache running there? see --address): %v", e.address, e.err)
}

func (e unreachableError) Unwrap() error { return e.err }

// errorMessage is the message of an error body that is the API's own JSON
// error; empty for any other body (a plain not-found page).
func errorMessage(data []byte) string {
	var e adminapi.Error
	if json.Unmarshal(data, &e) != nil {
		return ""
	}
	return e.Error
}
