package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/edgecache/edgecache/internal/omerodemo"
)

// DemoFiles holds Caddyfile.example and the www folder for the demo; the
// root package, which embeds them, sets it.
var DemoFiles fs.FS

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "demo",
		Usage: "[--listen <addr>] [--delay <duration>]",
		Short: "Runs the example Caddyfile against embedded OMERO-like servers",
		Long: `
Starts two read-only and one read-write stand-in OMERO.web servers on free
ports of 127.0.0.1, then runs the embedded Caddyfile.example against them:
the public site on --listen (default :8080), the cache buster on
127.0.0.1:9000, the long-timeout port on 127.0.0.1:8009 and the status
page on 127.0.0.1:2020 (change them with EDGECACHE_REFRESH_PORT,
EDGECACHE_LONG_PORT and EDGECACHE_STATUS_PORT). The static pages and
the maintenance flag live in a temporary folder, removed on exit.

The stand-in servers answer like OMERO.web (session cookies and Vary: Cookie
everywhere, never-cache headers on logins), take --delay to render an image
or thumbnail, and name the node that answered in the X-Omero-Node header and
in the body.

Runs until interrupted (Ctrl-C).`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().StringP("listen", "l", ":8080", "Address of the public site ([host]:port)")
			cmd.Flags().Duration("delay", 300*time.Millisecond, "How long the stand-in servers take to render an image")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(cmdDemo)
		},
	})
}

func cmdDemo(fl caddycmd.Flags) (int, error) {
	d, err := startDemo(demoConfig{
		Listen:   fl.String("listen"),
		ReadOnly: 2,
		Delay:    fl.Duration("delay"),
	})
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	d.printHelp(os.Stdout)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	fmt.Println("\nedgecache demo: stopping")
	if err := d.stop(); err != nil {
		return caddy.ExitCodeFailedQuit, err
	}
	return caddy.ExitCodeSuccess, nil
}

// demoConfig says how to run the demo.
type demoConfig struct {
	Listen   string        // public site address, [host]:port
	ReadOnly int           // number of read-only OMERO nodes
	Delay    time.Duration // render delay of the OMERO nodes
	// Caddyfile replaces the embedded Caddyfile.example when not nil.
	Caddyfile []byte
}

// demo is a running demo: OMERO nodes, a temporary folder and the Caddy
// config loaded from Caddyfile.example.
type demo struct {
	cluster  *omerodemo.Cluster
	delay    time.Duration
	dir      string
	flagFile string
	public   string // host:port to reach the public site
	refresh  string // host:port of the cache buster
	long     string // host:port of the long-timeout port
	status   string // host:port of the status page
}

// The environment variables of Caddyfile.example that the demo sets.
const (
	envPublic      = "EDGECACHE_PUBLIC"
	envPublicBind  = "EDGECACHE_PUBLIC_BIND"
	envPrivateBind = "EDGECACHE_PRIVATE_BIND"
	envRefreshPort = "EDGECACHE_REFRESH_PORT"
	envLongPort    = "EDGECACHE_LONG_PORT"
	envStatusPort  = "EDGECACHE_STATUS_PORT"
	envReadOnly    = "OMERO_READONLY"
	envReadWrite   = "OMERO_READWRITE"
	envWWW         = "EDGECACHE_WWW"
	envFlag        = "EDGECACHE_MAINTENANCE_FLAG"
	envCacheDir    = "EDGECACHE_CACHE_DIR"
)

// startDemo starts the OMERO nodes, writes the static pages to a temporary
// folder, points Caddyfile.example's environment variables at them and
// loads the config into Caddy.
func startDemo(cfg demoConfig) (_ *demo, err error) {
	host, port, err := splitListen(cfg.Listen)
	if err != nil {
		return nil, err
	}
	caddyfileText := cfg.Caddyfile
	if caddyfileText == nil {
		if caddyfileText, err = fs.ReadFile(DemoFiles, "Caddyfile.example"); err != nil {
			return nil, err
		}
	}

	d := &demo{delay: cfg.Delay}
	defer func() {
		if err != nil {
			d.stop()
		}
	}()
	d.cluster, err = omerodemo.StartCluster(cfg.ReadOnly, omerodemo.Options{Delay: cfg.Delay})
	if err != nil {
		return nil, err
	}
	if d.dir, err = os.MkdirTemp("", "edgecache-demo-"); err != nil {
		return nil, err
	}
	www, err := fs.Sub(DemoFiles, "www")
	if err != nil {
		return nil, err
	}
	if err := os.CopyFS(filepath.Join(d.dir, "www"), www); err != nil {
		return nil, err
	}
	d.flagFile = filepath.Join(d.dir, "omero-maintenance.flag")

	// Caddyfile.example reads these when it is adapted.
	env := map[string]string{
		envPublic:    ":" + port,
		envReadOnly:  strings.Join(d.cluster.ReadOnlyAddrs(), " "),
		envReadWrite: d.cluster.ReadWrite.Addr,
		envWWW:       filepath.Join(d.dir, "www"),
		envFlag:      d.flagFile,
		envCacheDir:  filepath.Join(d.dir, "cache"),
	}
	if host != "" {
		env[envPublicBind] = host
	}
	for k, v := range env {
		if err := os.Setenv(k, v); err != nil {
			return nil, err
		}
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "localhost"
	}
	d.public = net.JoinHostPort(host, port)
	privateHost := envOr(envPrivateBind, "127.0.0.1")
	d.refresh = net.JoinHostPort(privateHost, envOr(envRefreshPort, "9000"))
	d.long = net.JoinHostPort(privateHost, envOr(envLongPort, "8009"))
	d.status = net.JoinHostPort(privateHost, envOr(envStatusPort, "2020"))

	cfgJSON, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(caddyfileText, map[string]any{"filename": "Caddyfile.example"})
	if err != nil {
		return nil, fmt.Errorf("adapting Caddyfile.example: %w", err)
	}
	for _, w := range warnings {
		caddy.Log().Warn(w.String())
	}
	if cfgJSON, err = withoutPersist(cfgJSON); err != nil {
		return nil, err
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		return nil, fmt.Errorf("loading the demo config: %w", err)
	}
	return d, nil
}

// stop stops Caddy and the OMERO nodes and removes the temporary folder.
func (d *demo) stop() error {
	err := caddy.Stop()
	if d.cluster != nil {
		d.cluster.Close()
	}
	if d.dir != "" {
		os.RemoveAll(d.dir)
	}
	return err
}

func (d *demo) printHelp(w io.Writer) {
	fmt.Fprintf(w, "\nedgecache demo: OMERO stand-ins (render delay %s):\n", d.delay)
	for _, n := range d.cluster.Nodes() {
		fmt.Fprintf(w, "  %-5s http://%s\n", n.Node(), n.Addr)
	}
	fmt.Fprintf(w, `
Try:
  # twice: X-Cache-Status MISS (slow, from a read-only node), then HIT (at once)
  curl -sI http://%[1]s/webgateway/render_thumbnail/1/

  # which node rendered the cached copy; refresh it from the read-write node
  curl -s http://%[1]s/webclient/metadata_details/1/ | grep served-by
  curl -s http://%[2]s/webclient/metadata_details/1/ >/dev/null
  curl -s http://%[1]s/webclient/metadata_details/1/ | grep served-by

  # jQuery's _= parameter is not part of the cache key: a HIT
  curl -sI 'http://%[1]s/api/v0/?_=1234'
  curl -sI 'http://%[1]s/api/v0/?_=5678'

  # maintenance: OMERO pages answer 503 once the flag is seen (checked
  # every second); /about/ and /static/ stay up
  touch %[3]s
  sleep 1
  curl -sI http://%[1]s/webclient/
  rm %[3]s

  # the long-timeout port: normal caching against the read-write node
  # (X-Omero-Node: rw, a MISS: no earlier line cached this URL)
  curl -sI http://%[4]s/webgateway/render_thumbnail/2/

Static pages: http://%[1]s/about/
What the proxy is doing, refreshed every 2 s: http://%[5]s/
Ctrl-C stops the demo.
`, d.public, d.refresh, d.flagFile, d.long, d.status)
}

// splitListen accepts "8080", ":8080" or "host:8080".
func splitListen(listen string) (host, port string, err error) {
	if !strings.Contains(listen, ":") {
		listen = ":" + listen
	}
	host, port, err = net.SplitHostPort(listen)
	if err != nil {
		return "", "", fmt.Errorf("--listen %q: %w", listen, err)
	}
	if port == "" {
		return "", "", fmt.Errorf("--listen %q: no port", listen)
	}
	return host, port, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// withoutPersist turns off Caddy's autosave of the config: the demo's
// config is throwaway and must not be resumed by a later `caddy run`.
func withoutPersist(cfgJSON []byte) ([]byte, error) {
	var cfg map[string]any
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return nil, err
	}
	admin, _ := cfg["admin"].(map[string]any)
	if admin == nil {
		admin = map[string]any{}
		cfg["admin"] = admin
	}
	admin["config"] = map[string]any{"persist": false}
	return json.Marshal(cfg)
}
