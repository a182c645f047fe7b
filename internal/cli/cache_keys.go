package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/edgecache/edgecache/cache"
	"github.com/edgecache/edgecache/internal/adminapi"
)

// cacheKeysPageSize is how many keys cache-keys asks for at a time.
const cacheKeysPageSize = 1000

func init() {
	caddycmd.RegisterCommand(cacheKeysCommand)
}

var cacheKeysCommand = caddycmd.Command{
	Name:  "cache-keys",
	Usage: "(--zone <name> | --tag <tag>) [--prefix <prefix>] [--limit <n>] [--address <interface>]",
	Short: "Lists the keys stored in an edge cache zone of a running instance",
	Long: `
Prints the keys of the entries of a cache zone, one per line, asking the
admin API of a running edgecache page by page. --prefix keeps only the keys
starting with it; --limit stops after that many keys. --tag lists the keys
of the entries that carry the tag, of the zone, or of every zone when
--zone is not given.

A key that is not printable UTF-8 text (a request URI may hold any byte),
or that starts with a double quote, is printed Go-quoted ("/a\xff"), so
that no two keys print alike; purge --key accepts it back as printed.` + adminAddressHelp,
	CobraFunc: func(cmd *cobra.Command) {
		adminFlags(cmd)
		cmd.Flags().StringP("zone", "z", "", "Cache zone to list (required without --tag)")
		cmd.Flags().StringP("tag", "t", "", "List the keys of the entries that carry this tag")
		cmd.Flags().StringP("prefix", "p", "", "List only the keys starting with this prefix")
		cmd.Flags().IntP("limit", "n", 0, "List at most this many keys (default all)")
		cmd.MarkFlagsOneRequired("zone", "tag")
		cmd.RunE = adminRun(runCacheKeys)
	},
}

func runCacheKeys(ctx context.Context, fl caddycmd.Flags, stdout io.Writer) (int, error) {
	zone, prefix, tag := fl.String("zone"), fl.String("prefix"), fl.String("tag")
	limit, err := fl.GetInt("limit")
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	if zone == "" && tag == "" {
		return caddy.ExitCodeFailedStartup, errors.New("no zone: give one with --zone, or a tag with --tag")
	}
	if fl.Changed("tag") {
		if err := cache.CheckTag(tag); err != nil {
			return caddy.ExitCodeFailedStartup, fmt.Errorf("--tag: %v", err)
		}
	}
	if limit < 0 {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--limit %d: must not be negative", limit)
	}
	client, err := adminClientFromFlags(fl)
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}

	out := bufio.NewWriter(stdout)
	defer out.Flush()
	listed := 0
	err = eachKey(ctx, client, adminapi.KeysRequest{Zone: zone, Prefix: prefix, Tag: tag}, func(key string) bool {
		fmt.Fprintln(out, key)
		listed++
		return listed != limit
	})
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	return caddy.ExitCodeSuccess, out.Flush()
}

// eachKey calls fn with each key (in text form) the query lists, page by
// page, until fn returns false.
func eachKey(ctx context.Context, client *adminClient, query adminapi.KeysRequest, fn func(key string) bool) error {
	query.Limit = cacheKeysPageSize
	for query.After = ""; ; {
		var page adminapi.KeysResponse
		if err := client.do(ctx, http.MethodGet, query.URI(), nil, &page); err != nil {
			return fmt.Errorf("listing keys: %v", err)
		}
		for _, key := range page.Keys {
			// a server may filter by prefix itself; the keys are filtered here anyway
			if hasKeyPrefix(key, query.Prefix) && !fn(key) {
				return nil
			}
		}
		if page.Next == "" {
			return nil
		}
		if page.Next == query.After {
			return fmt.Errorf("listing keys: the admin API returned the same page again (next %q)", query.After)
		}
		query.After = page.Next
	}
}

// hasKeyPrefix reports whether a key starts with a prefix, both in text form.
func hasKeyPrefix(key, prefix string) bool {
	k, err1 := adminapi.ParseKeyText(key)
	p, err2 := adminapi.ParseKeyText(prefix)
	return err1 == nil && err2 == nil && strings.HasPrefix(k, p)
}
