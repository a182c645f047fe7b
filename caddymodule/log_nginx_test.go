package caddymodule

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap/zapcore"
)

func TestNginxEncoderLine(t *testing.T) {
	ne := &NginxEncoder{Format: `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_forwarded_for" $request_time $upstream_cache_status $upstream_addr ${uri}|$args|$sent_http_content_type`}
	if err := ne.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	enc := ne.Clone()
	req := map[string]any{"remote_ip": "192.0.2.7", "proto": "HTTP/1.1", "method": "GET", "host": "idr.example.org",
		"uri": "/api/v0/?x=1", "headers": map[string]any{"User-Agent": []any{"a\"b\tc"}}}
	fields := []zapcore.Field{
		{Key: "request", Type: zapcore.ReflectType, Interface: req},
		{Key: "user_id", Type: zapcore.StringType, String: ""},
		{Key: "duration", Type: zapcore.Float64Type, Integer: int64(math.Float64bits(0.0123))},
		{Key: "size", Type: zapcore.Int64Type, Integer: 512},
		{Key: "status", Type: zapcore.Int64Type, Integer: 200},
		{Key: "resp_headers", Type: zapcore.ReflectType, Interface: map[string][]string{"Content-Type": {"application/json"}}},
		{Key: "cache_status", Type: zapcore.StringType, String: "MISS"},
		{Key: "upstream", Type: zapcore.StringType, String: "127.0.0.1:4080"},
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.FixedZone("", 3600))
	buf, err := enc.EncodeEntry(zapcore.Entry{Time: at, Message: "handled request"}, fields)
	if err != nil {
		t.Fatal(err)
	}
	want := `192.0.2.7 - - [04/Mar/2026:05:06:07 +0100] "GET /api/v0/?x=1 HTTP/1.1" 200 512 "-" "a\x22b\x09c" "-" 0.012 MISS 127.0.0.1:4080 /api/v0/|x=1|application/json` + "\n"
	if buf.String() != want {
		t.Errorf("line\n got %s want %s", buf.String(), want)
	}
}

func TestNginxEncoderRejectsUnknownVariables(t *testing.T) {
	d := caddyfile.NewTestDispenser(`nginx "$remote_addr $gzip_ratio"`)
	if err := new(NginxEncoder).UnmarshalCaddyfile(d); err == nil || !strings.Contains(err.Error(), "$gzip_ratio") {
		t.Errorf("error %v", err)
	}
	d = caddyfile.NewTestDispenser(`nginx`)
	ne := new(NginxEncoder)
	if err := ne.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if err := ne.Provision(caddy.Context{}); err != nil || ne.Format != DefaultNginxLogFormat {
		t.Errorf("default format %q, %v", ne.Format, err)
	}
}
