package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/voxbridge/voxbridge/flow"
)

type openAPIParam struct {
	Ref  string `json:"$ref"`
	Name string `json:"name"`
	In   string `json:"in"`
}

type openAPIOp struct {
	OperationID string         `json:"operationId"`
	Access      string         `json:"x-access"`
	Security    *[]any         `json:"security"`
	Parameters  []openAPIParam `json:"parameters"`
	RequestBody *openAPIBody   `json:"requestBody"`
	Responses   map[string]any `json:"responses"`
}

type openAPIBody struct {
	Content map[string]struct {
		Example  json.RawMessage `json:"example"`
		Examples map[string]struct {
			Value json.RawMessage `json:"value"`
		} `json:"examples"`
	} `json:"content"`
}

type openAPIDocument struct {
	OpenAPI    string                                `json:"openapi"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Parameters map[string]openAPIParam `json:"parameters"`
	} `json:"components"`
}

var accessNames = map[access]string{public: "public", read: "read", write: "write"}

// The document and the route table describe the same API: the same
// operations, who may call them, the query parameters they read, and
// request examples that the handlers' own body types accept.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc openAPIDocument
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	e := newTestEnv(t)
	routes := map[string]route{}
	for _, rt := range e.api.routes {
		routes[strings.ToLower(rt.method)+" "+rt.path] = rt
	}
	documented := map[string]bool{}
	ops := map[string]bool{}
	for path, item := range doc.Paths {
		var shared []openAPIParam
		if raw, ok := item["parameters"]; ok {
			if err := json.Unmarshal(raw, &shared); err != nil {
				t.Fatalf("%s parameters: %v", path, err)
			}
		}
		for method, raw := range item {
			if method == "parameters" || method == "summary" || method == "description" {
				continue
			}
			key := method + " " + path
			documented[key] = true
			var op openAPIOp
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			rt, ok := routes[key]
			if !ok {
				t.Errorf("%s is documented but not served", key)
				continue
			}
			if op.OperationID != rt.op || ops[op.OperationID] {
				t.Errorf("%s: operationId %q, route says %q (or duplicated)", key, op.OperationID, rt.op)
			}
			ops[op.OperationID] = true
			if op.Access != accessNames[rt.access] {
				t.Errorf("%s: x-access %q, route says %q", key, op.Access, accessNames[rt.access])
			}
			if (rt.access == public) != (op.Security != nil && len(*op.Security) == 0) {
				t.Errorf("%s: security %v does not match access %s", key, op.Security, accessNames[rt.access])
			}
			if rt.access != public {
				if _, ok := op.Responses["401"]; !ok {
					t.Errorf("%s: 401 not documented", key)
				}
			}
			if rt.access == write {
				if _, ok := op.Responses["403"]; !ok {
					t.Errorf("%s: 403 not documented", key)
				}
			}

			// Query parameters: documented == read by the handler.
			var query, pathParams []string
			for _, p := range append(append([]openAPIParam(nil), shared...), op.Parameters...) {
				if p.Ref != "" {
					name := strings.TrimPrefix(p.Ref, "#/components/parameters/")
					def, ok := doc.Components.Parameters[name]
					if !ok {
						t.Fatalf("%s: dangling %s", key, p.Ref)
					}
					p = def
				}
				switch p.In {
				case "query":
					query = append(query, p.Name)
				case "path":
					pathParams = append(pathParams, p.Name)
				}
			}
			sort.Strings(query)
			served := slices.Sorted(slices.Values(rt.query))
			if !slices.Equal(query, served) {
				t.Errorf("%s: documented query %v, handler reads %v", key, query, served)
			}
			for _, p := range pathParams {
				if !strings.Contains(path, "{"+p+"}") {
					t.Errorf("%s: path parameter %s not in the path", key, p)
				}
			}
			if strings.Contains(path, "{") && len(pathParams) == 0 {
				t.Errorf("%s: path parameters not documented", key)
			}

			// Bodies: documented exactly where the route decodes one, and
			// every example decodes strictly into the handler's type.
			if (op.RequestBody != nil) != (rt.body != nil) {
				t.Errorf("%s: request body documented %v, route decodes one %v", key, op.RequestBody != nil, rt.body != nil)
				continue
			}
			if rt.body == nil {
				continue
			}
			if _, ok := op.Responses["415"]; !ok {
				t.Errorf("%s: 415 not documented", key)
			}
			content, ok := op.RequestBody.Content["application/json"]
			if !ok {
				t.Errorf("%s: body is not application/json", key)
				continue
			}
			examples := map[string]json.RawMessage{}
			if content.Example != nil {
				examples["example"] = content.Example
			}
			for name, ex := range content.Examples {
				examples[name] = ex.Value
			}
			if len(examples) == 0 {
				t.Errorf("%s: no request example", key)
			}
			for name, ex := range examples {
				v := rt.body()
				if err := decodeStrict(bytes.NewReader(ex), v); err != nil {
					t.Errorf("%s: example %s does not decode: %v", key, name, err)
					continue
				}
				checkExample(t, key+" example "+name, v)
			}
		}
	}
	for key := range routes {
		if !documented[key] {
			t.Errorf("%s is served but not documented", key)
		}
	}
}

// checkExample applies the handler's own validation to a decoded example.
func checkExample(t *testing.T, what string, v any) {
	t.Helper()
	switch b := v.(type) {
	case *flow.Flow:
		if b.ID == "" {
			b.ID = "example"
		}
		if e := checkFlow(b); e != nil {
			t.Errorf("%s: %v", what, e)
		}
	case *webhookRequest:
		if e := b.check(); e != nil {
			t.Errorf("%s: %v", what, e)
		}
	case interface{ check() *apiError }: // request types that validate themselves
		if e := b.check(); e != nil {
			t.Errorf("%s: %v", what, e)
		}
	default:
		t.Errorf("%s: no validation known for %T; add it here", what, v)
	}
}

// Every $ref in the document points at something that exists.
func TestOpenAPIRefsResolve(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if ref, ok := x["$ref"].(string); ok {
				var cur any = doc
				for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
					m, _ := cur.(map[string]any)
					cur = m[part]
				}
				if cur == nil {
					t.Errorf("dangling $ref %s", ref)
				}
			}
			for _, y := range x {
				walk(y)
			}
		case []any:
			for _, y := range x {
				walk(y)
			}
		}
	}
	walk(doc)
	var events []any
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	events = schemas["Event"].(map[string]any)["properties"].(map[string]any)["type"].(map[string]any)["enum"].([]any)
	if len(events) != len(EventTypes) {
		t.Fatalf("documented event types %v, known %v", events, EventTypes)
	}
	for i, ev := range events {
		if ev != EventTypes[i] {
			t.Fatalf("documented event types %v, known %v", events, EventTypes)
		}
	}
}

func TestOpenAPIServed(t *testing.T) {
	e := newTestEnv(t)
	res := e.do("GET", "/openapi.json", "", nil)
	if res.status != http.StatusOK || res.header.Get("Content-Type") != "application/json" || !bytes.Equal(res.body, openAPIDoc) {
		t.Fatalf("GET /openapi.json: %d %q", res.status, res.header.Get("Content-Type"))
	}
}
