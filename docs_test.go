package edgecache

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

var (
	fencedBlock = regexp.MustCompile("(?s)```.*?```")
	mdLink      = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdHeading   = regexp.MustCompile(`(?m)^#+\s+(.*)$`)
	htmlAnchor  = regexp.MustCompile(`<a id="([^"]+)"`)
	notSlug     = regexp.MustCompile(`[^\p{L}\p{N}_\- ]`)
	urlScheme   = regexp.MustCompile(`^[a-z]+:`)
)

// TestDocsLinks: every relative link of the README and docs/ names a file
// that exists, and a heading (as GitHub makes its anchor) that does: the
// reference moved out of the README, and a renamed section or a moved
// file must not leave a dead link behind.
func TestDocsLinks(t *testing.T) {
	files, _ := filepath.Glob("docs/*.md")
	files = append(files, "README.md", "dist/README.md")
	links := 0
	for _, file := range files {
		text, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range mdLink.FindAllStringSubmatch(fencedBlock.ReplaceAllString(string(text), ""), -1) {
			link := m[1]
			if urlScheme.MatchString(link) {
				continue
			}
			links++
			path, frag, _ := strings.Cut(link, "#")
			target := file
			if path != "" {
				target = filepath.Join(filepath.Dir(file), path)
			}
			if _, err := os.Stat(target); err != nil {
				t.Errorf("%s: %s: no such file", file, link)
				continue
			}
			if frag != "" && strings.HasSuffix(target, ".md") && !anchorsOf(t, target)[frag] {
				t.Errorf("%s: %s: no such heading", file, link)
			}
		}
	}
	if links == 0 {
		t.Fatal("no relative links found: the pattern is wrong")
	}
}

// anchorsOf returns the anchors GitHub makes of a Markdown file's
// headings (lower case, punctuation dropped, spaces as dashes, -1, -2 on
// repeats), and its explicit <a id> anchors.
func anchorsOf(t *testing.T, file string) map[string]bool {
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	for _, m := range htmlAnchor.FindAllStringSubmatch(string(text), -1) {
		anchors[m[1]] = true
	}
	seen := map[string]int{}
	for _, m := range mdHeading.FindAllStringSubmatch(fencedBlock.ReplaceAllString(string(text), ""), -1) {
		slug := strings.ReplaceAll(notSlug.ReplaceAllString(strings.ToLower(strings.TrimSpace(m[1])), ""), " ", "-")
		if n := seen[slug]; n > 0 {
			anchors[slug+"-"+strconv.Itoa(n)] = true
		} else {
			anchors[slug] = true
		}
		seen[slug]++
	}
	return anchors
}

// TestReadmeLength: the README is a newcomer's page (at most 150 lines);
// reference belongs in docs/.
func TestReadmeLength(t *testing.T) {
	text, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(text), "\n"); n > 150 {
		t.Errorf("README.md has %d lines; keep it at most 150 and move reference to docs/", n)
	}
}
