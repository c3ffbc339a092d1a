package policy

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// expr is CEL source text placed as it is into a literal built by literal.
type expr string

// literal writes v (a JSON-like tree of maps, lists, strings, numbers, bools, with expr leaves) as a CEL
// value. Maps are untyped: every value is wrapped in dyn(), which JSONPatch accepts and which lets one map
// hold strings, numbers and lists (CEL types a map literal by its first entry otherwise).
func literal(v any) string {
	switch x := v.(type) {
	case expr:
		return string(x)
	case nil:
		return "null"
	case string:
		return str(x)
	case bool:
		return strconv.FormatBool(x)
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<53 {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case int:
		return strconv.Itoa(x)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = str(k) + ": dyn(" + literal(x[k]) + ")"
		}
		return "{" + strings.Join(parts, ", ") + "}"
	case []any:
		parts := make([]string, len(x))
		for i, item := range x {
			parts[i] = literal(item)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	panic(fmt.Sprintf("policy: no CEL literal for %T", v)) // only JSON trees reach here
}

// str is a CEL string literal. CEL's escapes are Go's, so strconv.Quote's output is valid CEL.
func str(s string) string { return strconv.Quote(s) }

// strList is a CEL list of string literals.
func strList(items []string) string {
	parts := make([]string, len(items))
	for i, s := range items {
		parts[i] = str(s)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// generic turns a typed API object into the JSON tree literal takes.
func generic(v any) any {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err) // typed API objects always encode
	}
	var out any
	_ = json.Unmarshal(data, &out)
	return out
}

// concat joins CEL list expressions with +, or [] when there are none.
func concat(lists []string) string {
	if len(lists) == 0 {
		return "[]"
	}
	return strings.Join(lists, " + ")
}

// flatten is CEL for the concatenation of the first n lists of the list-of-lists expression l (Kubernetes'
// CEL has no flatten()): n is the most lists l can hold.
func flatten(l string, n int) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf("(%s.size() > %d ? %s[%d] : [])", l, i, l, i)
	}
	return "dyn(" + concat(parts) + ")"
}

// pointer escapes a JSON-pointer segment (RFC 6901).
func pointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
