package adminapi

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Cache keys are bytes: a request URI may hold any byte, and JSON (the
// admin API) would turn one that is not UTF-8 into U+FFFD, after which the
// printed key names no entry. So keys cross the admin API, and are printed
// by cache-keys, in a text form: as they are when they are printable UTF-8
// not starting with a double quote (every key of a normal URI), else
// Go-quoted ("/a\xff"). Key arguments (purge key and prefix, key listing
// prefix and cursor) are read back the same way: one starting with a
// double quote is a Go-quoted key.

// KeyText returns the text form of a key.
func KeyText(key string) string {
	if strings.HasPrefix(key, `"`) || !utf8.ValidString(key) {
		return strconv.Quote(key)
	}
	for _, r := range key {
		if !strconv.IsPrint(r) {
			return strconv.Quote(key)
		}
	}
	return key
}

// ParseKeyText is the inverse of KeyText.
func ParseKeyText(s string) (string, error) {
	if !strings.HasPrefix(s, `"`) {
		return s, nil
	}
	key, err := strconv.Unquote(s)
	if err != nil {
		return "", fmt.Errorf("%s starts with a double quote but is not a Go-quoted key", s)
	}
	return key, nil
}
