package caddymodule

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	maphandler "github.com/caddyserver/caddy/v2/modules/caddyhttp/map"
	"go.uber.org/zap"
)

// checkZoneMaps looks, at load, for the map handlers of this handler's
// server that set the variable its zone template names ({cache_zone}), and
// warns of each output that names no defined zone, and of a map without a
// default (a request no pattern matches gets an empty zone name). Such
// requests are proxied uncached at run time (see undefinedZones); this
// tells the operator before the first one does.
func (h *Handler) checkZoneMaps(ctx caddy.Context) []string {
	variable, ok := placeholderName(h.Zone)
	if !ok {
		return nil
	}
	srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if !ok || srv == nil {
		return nil
	}
	defined := h.app.ZoneNames()
	problems := routeMapProblems(srv.Routes, variable, defined)
	for _, p := range problems {
		// Once per config, not once per handler sharing the map.
		if h.app.zoneMapWarned[p] {
			continue
		}
		if h.app.zoneMapWarned == nil {
			h.app.zoneMapWarned = make(map[string]bool)
		}
		h.app.zoneMapWarned[p] = true
		h.logger.Warn("edge_cache: "+p+"; such requests are proxied uncached (BYPASS)",
			zap.String("zone", h.Zone), zap.Strings("defined", defined))
	}
	return problems
}

// placeholderName returns cache_zone for a template that is exactly
// {cache_zone}.
func placeholderName(template string) (string, bool) {
	if len(template) < 3 || template[0] != '{' || template[len(template)-1] != '}' || strings.Count(template, "{") != 1 {
		return "", false
	}
	return template[1 : len(template)-1], true
}

// routeMapProblems walks routes for map handlers setting variable: those
// provisioned already (routes before this handler's) and those still raw.
func routeMapProblems(routes caddyhttp.RouteList, variable string, defined []string) []string {
	var problems []string
	for _, route := range routes {
		for _, raw := range route.HandlersRaw {
			var v any
			if json.Unmarshal(raw, &v) == nil {
				problems = append(problems, zoneMapProblems(v, variable, defined)...)
			}
		}
		for _, handler := range route.Handlers {
			switch handler := handler.(type) {
			case *maphandler.Handler:
				var v map[string]any
				if b, err := json.Marshal(handler); err == nil && json.Unmarshal(b, &v) == nil {
					problems = append(problems, mapProblems(v, variable, defined)...)
				}
			case *caddyhttp.Subroute:
				problems = append(problems, routeMapProblems(handler.Routes, variable, defined)...)
			}
		}
	}
	return problems
}

// zoneMapProblems walks a handler's JSON (subroutes included) for map
// handlers setting variable.
func zoneMapProblems(v any, variable string, defined []string) []string {
	var problems []string
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			problems = append(problems, zoneMapProblems(e, variable, defined)...)
		}
	case map[string]any:
		if v["handler"] == "map" {
			problems = append(problems, mapProblems(v, variable, defined)...)
		}
		for _, e := range v {
			problems = append(problems, zoneMapProblems(e, variable, defined)...)
		}
	}
	return problems
}

func mapProblems(m map[string]any, variable string, defined []string) []string {
	dests, _ := m["destinations"].([]any)
	col := -1
	for i, d := range dests {
		if s, _ := d.(string); strings.Trim(s, "{}") == variable {
			col = i
		}
	}
	if col < 0 {
		return nil
	}
	var problems []string
	check := func(what string, out any) {
		name, ok := out.(string)
		if !ok || strings.Contains(name, "{") {
			return // a capture or placeholder: known only per request
		}
		if !slices.Contains(defined, name) {
			problems = append(problems, fmt.Sprintf("map %s: %s gives zone %q, which is not defined", variable, what, name))
		}
	}
	mappings, _ := m["mappings"].([]any)
	for _, mp := range mappings {
		mp, _ := mp.(map[string]any)
		outs, _ := mp["outputs"].([]any)
		input, _ := mp["input"].(string)
		if re, ok := mp["input_regexp"].(string); ok {
			input = "~" + re
		}
		if col < len(outs) {
			check(fmt.Sprintf("%q", input), outs[col])
		}
	}
	defaults, _ := m["defaults"].([]any)
	if col >= len(defaults) || defaults[col] == "" {
		problems = append(problems, fmt.Sprintf("map %s has no default: a request no pattern matches gets no zone", variable))
	} else {
		check("the default", defaults[col])
	}
	return problems
}
