package nginximport

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/internal/nginxcache"
)

// memSink records what it is given, in order.
type memSink struct {
	mu      sync.Mutex
	metas   []cache.Meta
	bodies  map[string][]byte
	refuse  map[string]bool // keys the zone holds as newer
	failKey string
}

func (s *memSink) Import(_ context.Context, m cache.Meta, body io.Reader) error {
	b, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuse[m.Key] {
		return cache.ErrNewerInZone
	}
	if m.Key == s.failKey {
		return fmt.Errorf("disk full")
	}
	if s.bodies == nil {
		s.bodies = map[string][]byte{}
	}
	s.metas = append(s.metas, m)
	s.bodies[m.Key] = b
	return nil
}

// writeEntry writes an nginx cache file for key, used at access.
func writeEntry(t *testing.T, dir, key string, body []byte, access time.Time, vary string, variant [16]byte) string {
	t.Helper()
	raw := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: %d\r\nSet-Cookie: s=1\r\nDate: x\r\n", len(body))
	if vary != "" {
		raw += "Vary: " + vary + "\r\n"
	}
	raw += "\r\n"
	e := &nginxcache.Entry{Key: key, ValidSec: access.Add(24 * time.Hour).Unix(), Date: access.Unix(), Vary: vary, Variant: variant, LastModified: -1}
	b, err := nginxcache.Encode(e, []byte(raw), body)
	if err != nil {
		t.Fatal(err)
	}
	name := nginxcache.KeyHash(key)
	if vary != "" {
		name = variant
	}
	path := filepath.Join(dir, nginxcache.FileName(name, []int{1, 2}))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, access, access); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunKeepsTheMostRecentlyUsedWithinMaxSize(t *testing.T) {
	dir := t.TempDir()
	base := time.Now().Add(-10 * 24 * time.Hour)
	for i := range 10 {
		// Entry i was last used i hours after base: 9 is the most recent.
		writeEntry(t, dir, fmt.Sprintf("/e/%d", i), bytes.Repeat([]byte{byte(i)}, 3000), base.Add(time.Duration(i)*time.Hour), "", [16]byte{})
	}
	sink := &memSink{refuse: map[string]bool{"/e/9": true}}
	var progress strings.Builder
	sum, err := Run(context.Background(), Options{From: dir, Budget: 4 * 4096, Workers: 1, Progress: &progress}, sink)
	if err != nil {
		t.Fatal(err)
	}
	// Four 4 KiB blocks: entries 6 to 9; 9 is already in the zone.
	if sum.Imported != 3 || sum.Skipped[ReasonMaxSize] != 6 || sum.Skipped[ReasonNewerInZone] != 1 || sum.Files != 10 {
		t.Fatalf("summary %+v", sum)
	}
	var order []string
	for _, m := range sink.metas {
		order = append(order, m.Key)
	}
	if strings.Join(order, " ") != "/e/6 /e/7 /e/8" {
		t.Errorf("written in order %v, want the least recently used first", order)
	}
	m := sink.metas[0]
	if m.Header.Get("Set-Cookie") != "" || m.Header.Get("Date") != "" || m.Header.Get("Content-Length") != "" || m.Header.Get("Content-Type") != "image/png" {
		t.Errorf("stored header %v", m.Header)
	}
	if !m.StoredAt.Equal(time.Unix(base.Add(6*time.Hour).Unix(), 0)) || !m.ValidUntil.Equal(m.StoredAt.Add(24*time.Hour)) || m.BodySize != 3000 {
		t.Errorf("meta %+v", m)
	}
	if !strings.Contains(progress.String(), "10/10 files") && !strings.Contains(progress.String(), "/4 files") {
		t.Errorf("progress %q", progress.String())
	}
	var out strings.Builder
	sum.WriteSummary(&out)
	if !strings.Contains(out.String(), "imported: 3 entries") || !strings.Contains(out.String(), "skipped "+ReasonMaxSize+": 6") {
		t.Errorf("summary:\n%s", out.String())
	}
}

func TestRunSinceDryRunAndFailures(t *testing.T) {
	dir := t.TempDir()
	old := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	recent := time.Now().Add(-time.Hour)
	writeEntry(t, dir, "/old", []byte("o"), old, "", [16]byte{})
	writeEntry(t, dir, "/new", []byte("n"), recent, "", [16]byte{})
	writeEntry(t, dir, "/fails", []byte("f"), recent, "", [16]byte{})

	sink := &memSink{}
	sum, err := Run(context.Background(), Options{From: dir, Since: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), DryRun: true}, sink)
	if err != nil || sum.Imported != 2 || sum.Skipped[ReasonSince] != 1 || len(sink.metas) != 0 {
		t.Fatalf("dry run: %+v %v, sink got %d", sum, err, len(sink.metas))
	}
	sink.failKey = "/fails"
	sum, err = Run(context.Background(), Options{From: dir}, sink)
	if err != nil || sum.Imported != 2 || sum.Failed != 1 || sum.FirstError == nil {
		t.Fatalf("run: %+v %v", sum, err)
	}
}

func TestRunVaryVariants(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	fr := http.Header{"Accept-Language": {"fr"}}
	writeEntry(t, dir, "/v", []byte("bonjour"), now, "Accept-Language", nginxcache.VariantHash("/v", "Accept-Language", fr))
	writeEntry(t, dir, "/w", []byte("hallo"), now, "Accept-Language", nginxcache.VariantHash("/w", "Accept-Language", http.Header{"Accept-Language": {"de"}}))
	writeEntry(t, dir, "/plain", []byte("x"), now, "", [16]byte{})

	sum, err := Run(context.Background(), Options{From: dir}, &memSink{})
	if err != nil || sum.Imported != 1 || sum.Skipped[ReasonVaryIgnored] != 2 {
		t.Fatalf("zone ignoring Vary: %+v %v", sum, err)
	}
	sink := &memSink{}
	sum, err = Run(context.Background(), Options{From: dir, HonourVary: true, VaryValues: http.Header{"Accept-Language": {"en", "fr"}}}, sink)
	if err != nil || sum.Imported != 2 || sum.Skipped[ReasonVaryUnknown] != 1 {
		t.Fatalf("zone honouring Vary: %+v %v", sum, err)
	}
	for _, m := range sink.metas {
		if m.Key == "/v" && m.Variant != cache.Variant(m.Header["Vary"], fr) {
			t.Errorf("variant %q", m.Variant)
		}
		if m.Key == "/plain" && m.Variant != "" {
			t.Errorf("a plain entry got variant %q", m.Variant)
		}
	}
}

func TestRunInterrupted(t *testing.T) {
	dir := t.TempDir()
	for i := range 50 {
		writeEntry(t, dir, fmt.Sprintf("/i/%d", i), []byte("x"), time.Now(), "", [16]byte{})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sink := &memSink{}
	sum, err := Run(ctx, Options{From: dir, Workers: 1}, sink)
	if err != nil || !sum.Interrupted || sum.Imported == 50 || int(sum.Imported) != len(sink.metas) {
		t.Fatalf("interrupted run: %+v %v", sum, err)
	}
	var out strings.Builder
	sum.WriteSummary(&out)
	if !strings.Contains(out.String(), "run the same command again to resume") {
		t.Errorf("summary:\n%s", out.String())
	}
	// Run again: what the zone holds is skipped, the rest imported.
	done := map[string]bool{}
	for _, m := range sink.metas {
		done[m.Key] = true
	}
	again := &memSink{refuse: done}
	sum, err = Run(context.Background(), Options{From: dir}, again)
	if err != nil || sum.Imported != int64(50-len(done)) || sum.Skipped[ReasonNewerInZone] != int64(len(done)) {
		t.Fatalf("resumed run: %+v %v", sum, err)
	}
}

func TestStoredHeaderDropsHopByHop(t *testing.T) {
	h := http.Header{"Connection": {"X-Secret, close", "X-Other"}, "X-Secret": {"s"}, "X-Other": {"o"},
		"Transfer-Encoding": {"chunked"}, "Keep-Alive": {"timeout=5"}, "Content-Type": {"text/plain"}, "X-Cache-Status": {"HIT"}}
	got := storedHeader(h, "X-Cache-Status")
	if len(got) != 1 || got.Get("Content-Type") != "text/plain" {
		t.Errorf("stored header %v, want Content-Type alone", got)
	}
}

func TestChunkFramed(t *testing.T) {
	for body, want := range map[string]bool{
		"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n": true,
		"5;ext=1\r\nhello\r\n0\r\n\r\n":          true,
		"hello world":                            false,
		"cafe\r\nmenu":                           false, // a body that merely starts like a chunk
		"5\r\nhello\r\n":                         false, // no last chunk: not a whole framing
		"":                                       false,
	} {
		if got := chunkFramed(strings.NewReader(body), 0, int64(len(body))); got != want {
			t.Errorf("chunkFramed(%q) = %v, want %v", body, got, want)
		}
	}
}
