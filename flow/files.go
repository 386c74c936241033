package flow

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/voxbridge/voxbridge/store"
	"gopkg.in/yaml.v3"
)

// maxFlowFile bounds a flow file; flows are written by people.
const maxFlowFile = 1 << 20

// ParseFile reads a flow from JSON or YAML (by extension; .yaml/.yml are
// YAML, anything else JSON), strictly: unknown fields are errors.
func ParseFile(path string) (*Flow, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) > maxFlowFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFlowFile)
	}
	f, err := Parse(b, isYAML(path))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if f.ID == "" {
		f.ID = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	return f, nil
}

func isYAML(path string) bool {
	ext := strings.ToLower(filepath.Ext(path))
	return ext == ".yaml" || ext == ".yml"
}

// Parse decodes a flow document. YAML is converted to JSON first so both
// forms go through the same strict decoding of actions and options.
func Parse(b []byte, yamlDoc bool) (*Flow, error) {
	if yamlDoc {
		var doc any
		dec := yaml.NewDecoder(bytes.NewReader(b))
		if err := dec.Decode(&doc); err != nil {
			return nil, fmt.Errorf("yaml: %w", err)
		}
		j, err := json.Marshal(yamlToJSON(doc))
		if err != nil {
			return nil, fmt.Errorf("yaml: %w", err)
		}
		b = j
	}
	var f Flow
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&f); err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the flow")
	}
	return &f, nil
}

// yamlToJSON turns YAML's map[string]any (and nested) into JSON-encodable
// values; YAML allows non-string keys, JSON does not.
func yamlToJSON(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, x := range t {
			t[k] = yamlToJSON(x)
		}
		return t
	case map[any]any:
		m := make(map[string]any, len(t))
		for k, x := range t {
			m[fmt.Sprint(k)] = yamlToJSON(x)
		}
		return m
	case []any:
		for i, x := range t {
			t[i] = yamlToJSON(x)
		}
	}
	return v
}

// FromStore converts a stored flow.
func FromStore(sf *store.Flow) (*Flow, error) {
	f := &Flow{ID: sf.ID, Name: sf.Name, Detail: sf.Detail, OnCompleteFlowID: sf.OnCompleteFlowID}
	if err := json.Unmarshal(sf.Actions, &f.Actions); err != nil {
		return nil, fmt.Errorf("flow %s: stored actions: %w", sf.ID, err)
	}
	return f, nil
}

// ToStore converts a flow for storage.
func (f *Flow) ToStore(source string) (*store.Flow, error) {
	actions, err := json.Marshal(f.Actions)
	if err != nil {
		return nil, err
	}
	return &store.Flow{ID: f.ID, Name: f.Name, Detail: f.Detail, Actions: actions, OnCompleteFlowID: f.OnCompleteFlowID, Source: source}, nil
}

// LoadDir validates every flow file in dir (*.json, *.yaml, *.yml) and
// makes the store's flows from that directory exactly these. One bad file
// refuses the whole load, so a typo never half-applies.
func LoadDir(ctx context.Context, db *store.DB, dir string) ([]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("flows dir: %w", err)
	}
	var paths []string
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if !e.IsDir() && (ext == ".json" || ext == ".yaml" || ext == ".yml") {
			paths = append(paths, filepath.Join(abs, e.Name()))
		}
	}
	sort.Strings(paths)
	source := "file:" + abs + string(filepath.Separator)
	var flows []store.Flow
	var ids []string
	seen := map[string]string{}
	for _, p := range paths {
		f, err := ParseFile(p)
		if err != nil {
			return nil, err
		}
		if err := f.Validate(); err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		if other, dup := seen[f.ID]; dup {
			return nil, fmt.Errorf("%s: flow id %q already defined in %s", p, f.ID, other)
		}
		seen[f.ID] = p
		sf, err := f.ToStore(source + filepath.Base(p))
		if err != nil {
			return nil, err
		}
		flows = append(flows, *sf)
		ids = append(ids, f.ID)
	}
	if err := db.ReplaceSourceFlows(ctx, source, flows); err != nil {
		return nil, err
	}
	return ids, nil
}
