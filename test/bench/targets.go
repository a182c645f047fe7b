package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"
)

// bench holds the state of one harness run.
type bench struct {
	opt    options
	dir    string
	bin    string
	ps     *procs
	origin *origin
	out    io.Writer // the markdown report

	// Started by the load parts and reused by the stampede.
	nginx, edge *target
}

// target is one server that the load parts measure.
type target struct {
	name        string // short name: nginx, edgecache, ceiling, origin
	label       string // what it is, for the tables
	base        string // http://127.0.0.1:port
	admin       string // Caddy's admin address, if any
	proc        *proc  // nil for the in-process origin
	caches      bool   // answers with X-Cache-Status and should HIT after warm-up
	unavailable string // why it could not be measured, if it could not
	warnings    []string
}

// Target names, in the order of the tables.
const (
	nameNginx     = "nginx"
	nameEdgecache = "edgecache"
	nameEdgeDisk  = "edgecache-disk"
	nameCeiling   = "ceiling"
	nameOrigin    = "origin"
)

var httpClient = &http.Client{
	Timeout: 30 * time.Second,
	Transport: &http.Transport{
		MaxIdleConnsPerHost: 64,
		DisableCompression:  true,
	},
}

func (b *bench) originTarget() *target {
	return &target{name: nameOrigin, label: "Go net/http origin (bytes in memory)", base: "http://" + b.origin.addr}
}

// startNginx starts nginx with nginxConf in its own folder.
func (b *bench) startNginx(ctx context.Context, name string) (*target, error) {
	nginx, err := nginxPath()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(b.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	data := configData{Dir: dir, Port: port, Origin: b.origin.addr, AccessLog: b.opt.accessLog}
	conf := filepath.Join(dir, "nginx.conf")
	if err := writeConfig(conf, nginxConf, data); err != nil {
		return nil, err
	}
	p, err := b.ps.start(name, dir, filepath.Join(dir, "nginx.log"), nil, nginx, "-p", dir, "-c", conf, "-e", "stderr")
	if err != nil {
		return nil, err
	}
	t := &target{name: name, label: "nginx proxy_cache (disk zone)", base: fmt.Sprintf("http://127.0.0.1:%d", port), proc: p, caches: true}
	if err := p.waitHTTP(ctx, t.base+"/", 30*time.Second); err != nil {
		return nil, err
	}
	return t, nil
}

// startCaddy starts the edgecache binary (a Caddy build) with a Caddyfile
// made from tmpl. A config that does not load is not an error of the
// harness: the target is returned marked unavailable, with Caddy's message.
func (b *bench) startCaddy(ctx context.Context, name, label string, tmpl *template.Template, memorySize string) (*target, error) {
	return b.startCaddyWith(ctx, name, label, tmpl, configData{MemorySize: memorySize})
}

// startCaddyWith is startCaddy with more of the template's data (the fleet
// part's Redis and node); the folder, ports, origin and bodies are filled in.
func (b *bench) startCaddyWith(ctx context.Context, name, label string, tmpl *template.Template, data configData) (*target, error) {
	dir := filepath.Join(b.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	adminPort, err := freePort()
	if err != nil {
		return nil, err
	}
	data.Dir, data.Port, data.AdminPort, data.Origin = dir, port, adminPort, b.origin.addr
	data.AccessLog = b.opt.accessLog
	data.Body10k, data.Body1m = string(b.origin.body10k), string(b.origin.body1m)
	caddyfile := filepath.Join(dir, "Caddyfile")
	if err := writeConfig(caddyfile, tmpl, data); err != nil {
		return nil, err
	}
	// Caddy keeps state under $HOME / XDG folders: keep it in the temp dir.
	env := []string{
		"HOME=" + dir,
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
		"XDG_DATA_HOME=" + filepath.Join(dir, "data"),
	}
	if tmpl == edgecacheCaddyfile {
		env = append(env, b.opt.edgeEnv...)
	}
	p, err := b.ps.start(name, dir, filepath.Join(dir, "caddy.log"), env, b.bin, "run", "--config", caddyfile, "--adapter", "caddyfile")
	if err != nil {
		return nil, err
	}
	t := &target{
		name: name, label: label, base: fmt.Sprintf("http://127.0.0.1:%d", port),
		admin: fmt.Sprintf("127.0.0.1:%d", adminPort), proc: p,
	}
	if err := p.waitHTTP(ctx, t.base+"/", 60*time.Second); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		p.stop()
		t.unavailable = caddyError(p)
		b.logf("%s unavailable: %s", name, t.unavailable)
		return t, nil
	}
	return t, nil
}

// caddyError picks Caddy's error out of its log: a plain "Error: ..." line
// or a JSON log entry of level error.
func caddyError(p *proc) string {
	lines := strings.Split(p.logTail(20), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if msg, ok := strings.CutPrefix(lines[i], "Error:"); ok {
			return strings.TrimSpace(msg)
		}
		var entry struct{ Level, Msg string }
		if json.Unmarshal([]byte(lines[i]), &entry) == nil && entry.Level == "error" {
			return entry.Msg
		}
	}
	return fmt.Sprintf("exited (%v)", p.err)
}

// warm fetches each path a few times and checks the bodies, and on caching
// targets that the last answers are cache hits.
func (b *bench) warm(ctx context.Context, t *target, paths map[string]int) error {
	for path, size := range paths {
		var statuses []string
		for i := 0; i < 3; i++ {
			resp, n, err := get(ctx, t.base+path)
			if err != nil {
				return fmt.Errorf("warming %s: %w", t.name, err)
			}
			if resp.StatusCode != http.StatusOK || n != int64(size) {
				return fmt.Errorf("warming %s: GET %s answered %d with %d bytes, want 200 with %d", t.name, path, resp.StatusCode, n, size)
			}
			statuses = append(statuses, cacheStatus(resp))
			time.Sleep(50 * time.Millisecond) // let an asynchronous cache store settle
		}
		if t.caches && (statuses[1] != "HIT" || statuses[2] != "HIT") {
			w := fmt.Sprintf("%s: X-Cache-Status of 3 GETs of %s was %s, want HIT from the second on", t.name, path, strings.Join(statuses, ","))
			t.warnings = append(t.warnings, w)
			b.logf("warning: %s", w)
		}
	}
	return nil
}

// getBody fetches url and returns its body, which must come with a 200.
func getBody(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(body), err
}

// get fetches url and discards the body, returning its length.
func get(ctx context.Context, url string) (*http.Response, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	return resp, n, err
}

func cacheStatus(resp *http.Response) string {
	if s := resp.Header.Get("X-Cache-Status"); s != "" {
		return s
	}
	return "-"
}
