package adminapi

import (
	"strings"
	"testing"
)

func TestKeyTextRoundTrip(t *testing.T) {
	for _, key := range []string{"/a", "/a b", `/a\b`, "/a\xffb", "/é", `"/q"`, "/tab\there", "/nl\n", ""} {
		text := KeyText(key)
		if strings.ContainsAny(text, "\n\t") || !strings.HasPrefix(text, `"`) && text != key {
			t.Errorf("KeyText(%q) = %q", key, text)
		}
		if back, err := ParseKeyText(text); err != nil || back != key {
			t.Errorf("ParseKeyText(%q) = %q, %v; want %q", text, back, err, key)
		}
	}
	if KeyText("/webgateway/render_image/1/0/0/?c=1|0:255$FF0000") != "/webgateway/render_image/1/0/0/?c=1|0:255$FF0000" {
		t.Error("a plain key is not printed as it is")
	}
	if _, err := ParseKeyText(`"/unterminated`); err == nil {
		t.Error("a broken quoted key was accepted")
	}
}
