package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"
)

func init() {
	caddy.RegisterModule(NginxEncoder{})
}

// NginxEncoder writes access log entries as nginx's log_format does, so that
// the log analysis of an nginx site keeps working after the switch. It
// takes an nginx log_format string. The cache status comes from the
// cache_status field and the upstream from the upstream field, which
// `log_append cache_status {http.edge_cache.status}` and `log_append
// upstream {http.reverse_proxy.upstream.hostport}` add.
//
// Variables: $remote_addr $remote_user $time_local $time_iso8601 $request
// $request_method $request_uri $uri $args $server_protocol $host $status
// $body_bytes_sent $request_time $upstream_cache_status $upstream_addr
// $http_<header> $sent_http_<header>. As in nginx, an empty value is
// written "-", and '"', '\' and control bytes as \xHH.
type NginxEncoder struct {
	zapcore.Encoder `json:"-"` // collects the fields (JSON), read back by EncodeEntry
	// Format is the nginx log_format. Default: nginx's "combined" with
	// $upstream_cache_status at the end.
	Format string `json:"format,omitempty"`

	parts []logPart
}

// DefaultNginxLogFormat is nginx's combined format plus the cache status.
const DefaultNginxLogFormat = `$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $upstream_cache_status`

// logPart is literal text, or a variable (name set).
type logPart struct {
	text string
	name string
}

// CaddyModule returns the Caddy module information.
func (NginxEncoder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.encoders.nginx",
		New: func() caddy.Module { return new(NginxEncoder) },
	}
}

// Provision parses the format.
func (ne *NginxEncoder) Provision(_ caddy.Context) error {
	if ne.Format == "" {
		ne.Format = DefaultNginxLogFormat
	}
	parts, err := parseNginxLogFormat(ne.Format)
	if err != nil {
		return err
	}
	ne.parts = parts
	ne.Encoder = zapcore.NewJSONEncoder(zapcore.EncoderConfig{MessageKey: "msg", TimeKey: "", LevelKey: ""})
	return nil
}

// UnmarshalCaddyfile sets up the encoder from Caddyfile tokens. Syntax:
//
//	format nginx [<log_format>]
func (ne *NginxEncoder) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // encoder name
	if d.NextArg() {
		ne.Format = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	if d.NextBlock(d.Nesting()) {
		return d.Err("nginx: no subdirectives; the format is one argument")
	}
	if ne.Format != "" {
		if _, err := parseNginxLogFormat(ne.Format); err != nil {
			return d.Err(err.Error())
		}
	}
	return nil
}

var knownLogVars = map[string]bool{
	"remote_addr": true, "remote_user": true, "time_local": true, "time_iso8601": true, "request": true,
	"request_method": true, "request_uri": true, "uri": true, "args": true, "server_protocol": true, "host": true,
	"status": true, "body_bytes_sent": true, "request_time": true, "upstream_cache_status": true, "upstream_addr": true,
}

func parseNginxLogFormat(f string) ([]logPart, error) {
	var parts []logPart
	for f != "" {
		i := strings.IndexByte(f, '$')
		if i < 0 {
			parts = append(parts, logPart{text: f})
			break
		}
		if i > 0 {
			parts = append(parts, logPart{text: f[:i]})
		}
		f = f[i+1:]
		var name string
		if strings.HasPrefix(f, "{") {
			end := strings.IndexByte(f, '}')
			if end < 0 {
				return nil, fmt.Errorf("nginx log format: unclosed ${")
			}
			name, f = f[1:end], f[end+1:]
		} else {
			n := 0
			for n < len(f) && (f[n] == '_' || f[n] >= 'a' && f[n] <= 'z' || f[n] >= 'A' && f[n] <= 'Z' || f[n] >= '0' && f[n] <= '9') {
				n++
			}
			name, f = f[:n], f[n:]
		}
		name = strings.ToLower(name)
		if !knownLogVars[name] && !strings.HasPrefix(name, "http_") && !strings.HasPrefix(name, "sent_http_") {
			return nil, fmt.Errorf("nginx log format: unknown variable $%s", name)
		}
		parts = append(parts, logPart{name: name})
	}
	return parts, nil
}

// Clone implements zapcore.Encoder.
func (ne *NginxEncoder) Clone() zapcore.Encoder {
	return &NginxEncoder{Encoder: ne.Encoder.Clone(), Format: ne.Format, parts: ne.parts}
}

var logBuffers = buffer.NewPool()

// accessEntry is what EncodeEntry reads of Caddy's access log fields.
type accessEntry struct {
	Msg     string `json:"msg"`
	Request struct {
		RemoteIP string              `json:"remote_ip"`
		Proto    string              `json:"proto"`
		Method   string              `json:"method"`
		Host     string              `json:"host"`
		URI      string              `json:"uri"`
		Headers  map[string][]string `json:"headers"`
	} `json:"request"`
	UserID      string              `json:"user_id"`
	Duration    float64             `json:"duration"`
	Size        int64               `json:"size"`
	Status      int                 `json:"status"`
	RespHeaders map[string][]string `json:"resp_headers"`
	CacheStatus string              `json:"cache_status"`
	Upstream    string              `json:"upstream"`
}

// EncodeEntry implements zapcore.Encoder.
func (ne *NginxEncoder) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	js, err := ne.Encoder.EncodeEntry(ent, fields)
	if err != nil {
		return nil, err
	}
	defer js.Free()
	var e accessEntry
	if err := json.Unmarshal(js.Bytes(), &e); err != nil {
		return nil, err
	}
	out := logBuffers.Get()
	for _, p := range ne.parts {
		if p.name == "" {
			out.AppendString(p.text)
			continue
		}
		v := e.value(p.name, ent.Time)
		if v == "" {
			v = "-"
		}
		appendEscaped(out, v)
	}
	out.AppendByte('\n')
	return out, nil
}

func (e *accessEntry) value(name string, t time.Time) string {
	r := &e.Request
	switch name {
	case "remote_addr":
		return r.RemoteIP
	case "remote_user":
		return e.UserID
	case "time_local":
		return t.Format("02/Jan/2006:15:04:05 -0700")
	case "time_iso8601":
		return t.Format("2006-01-02T15:04:05-07:00")
	case "request":
		if r.Method == "" {
			return e.Msg
		}
		return r.Method + " " + r.URI + " " + r.Proto
	case "request_method":
		return r.Method
	case "request_uri":
		return r.URI
	case "uri":
		path, _, _ := strings.Cut(r.URI, "?")
		return path
	case "args":
		_, args, _ := strings.Cut(r.URI, "?")
		return args
	case "server_protocol":
		return r.Proto
	case "host":
		return r.Host
	case "status":
		return strconv.Itoa(e.Status)
	case "body_bytes_sent":
		return strconv.FormatInt(e.Size, 10)
	case "request_time":
		return strconv.FormatFloat(e.Duration, 'f', 3, 64)
	case "upstream_cache_status":
		return e.CacheStatus
	case "upstream_addr":
		return e.Upstream
	}
	if h, ok := strings.CutPrefix(name, "sent_http_"); ok {
		return firstHeader(e.RespHeaders, h)
	}
	if h, ok := strings.CutPrefix(name, "http_"); ok {
		return firstHeader(r.Headers, h)
	}
	return ""
}

// firstHeader is nginx's $http_x_y: the first value of header X-Y.
func firstHeader(h map[string][]string, name string) string {
	v := h[http.CanonicalHeaderKey(strings.ReplaceAll(name, "_", "-"))]
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// appendEscaped writes v as nginx's default log escaping does.
func appendEscaped(b *buffer.Buffer, v string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '"' || c == '\\' || c < 0x20 || c >= 0x7f {
			b.AppendString(`\x`)
			b.AppendByte(hex[c>>4])
			b.AppendByte(hex[c&0xf])
			continue
		}
		b.AppendByte(c)
	}
}

// Interface guards
var (
	_ zapcore.Encoder       = (*NginxEncoder)(nil)
	_ caddy.Provisioner     = (*NginxEncoder)(nil)
	_ caddyfile.Unmarshaler = (*NginxEncoder)(nil)
)
