package cli

import (
	"strings"
	"testing"
)

func TestRefreshableKey(t *testing.T) {
	for _, k := range []string{"/webgateway/render_image/1/", "https://idr.example/webclient/?x=1"} {
		if err := refreshableKey(k); err != nil {
			t.Errorf("%q: %v", k, err)
		}
	}
	for key, want := range map[string]string{
		"idr.example/webgateway/render_image/1/": "not a URL",
		"/a\nb":                                  "line break",
	} {
		if err := refreshableKey(key); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error saying %q", key, err, want)
		}
	}
}
