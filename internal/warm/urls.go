package warm

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
)

// listLine is one URL of the list.
type listLine struct {
	num  int    // 1-based line number
	text string // the URL as written, trimmed
}

// urlText returns the URL on a list line, or "" for a blank or comment line.
func urlText(line string) string {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, "#") {
		return ""
	}
	return line
}

// listInfo is what a first pass over the list learns.
type listInfo struct {
	lines       int    // lines in the file
	urls        int    // lines holding a URL
	fingerprint string // hash of the content, to tie a state file to it
}

// scanList reads the list once for its size and fingerprint.
func scanList(path string) (listInfo, error) {
	var info listInfo
	f, err := os.Open(path)
	if err != nil {
		return info, err
	}
	defer f.Close()
	h := sha256.New()
	err = eachLine(io.TeeReader(f, h), func(num int, line string) error {
		info.lines = num
		if urlText(line) != "" {
			info.urls++
		}
		return nil
	})
	if err != nil {
		return info, fmt.Errorf("reading %s: %v", path, err)
	}
	info.fingerprint = "sha256:" + hex.EncodeToString(h.Sum(nil))
	return info, nil
}

// errStop ends eachLine early without an error.
var errStop = errors.New("stop")

// eachLine calls fn for every line of r (without its end of line), with
// its 1-based number. Lines may be of any length.
func eachLine(r io.Reader, fn func(num int, line string) error) error {
	br := bufio.NewReaderSize(r, 64*1024)
	for num := 1; ; num++ {
		line, err := br.ReadString('\n')
		if line != "" {
			if ferr := fn(num, strings.TrimSuffix(line, "\n")); ferr != nil {
				if ferr == errStop {
					return nil
				}
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// target returns the URL to request for a list entry: its path and query
// appended to via.
func target(via *url.URL, entry string) (string, error) {
	var requestURI string
	switch {
	case strings.HasPrefix(entry, "/"):
		u, err := url.ParseRequestURI(entry)
		if err != nil {
			return "", fmt.Errorf("not a valid URL path: %v", err)
		}
		requestURI = u.RequestURI()
	case strings.Contains(entry, "://"):
		u, err := url.Parse(entry)
		if err != nil {
			return "", fmt.Errorf("not a valid URL: %v", err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return "", fmt.Errorf("scheme %q: want http or https", u.Scheme)
		}
		requestURI = u.RequestURI()
	default:
		return "", fmt.Errorf("want a path starting with / or an http(s):// URL")
	}
	t := *via
	t.Path, t.RawPath, t.RawQuery = "", "", ""
	return t.String() + via.EscapedPath() + requestURI, nil
}
