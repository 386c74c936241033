package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"gopkg.in/yaml.v3"
)

// The resource commands (trunks, extensions, numbers) work on the database
// file or over the API, by one rule, checked before any flag is parsed:
//
//   - --api URL given: the API (with --db too: an error, pick one);
//   - --db FILE given: the database;
//   - otherwise VOXBRIDGE_API_URL set: the API;
//   - otherwise the database (VOXBRIDGE_DB, default voxbridge.db).
//
// The database mode is for setting up a server before it runs; the API
// mode for a running one, whose caches and registrations then stay right.
func useAPI(noun string, args []string, env cliEnv) (bool, error) {
	hasAPI, hasDB := hasFlag(args, "api"), hasFlag(args, "db")
	switch {
	case hasAPI && hasDB:
		return false, fmt.Errorf("%s: give --api (a running server) or --db (the database file), not both", noun)
	case hasAPI:
		return true, nil
	case hasDB:
		return false, nil
	}
	return env.getenv(envAPIURL) != "", nil
}

// hasFlag reports whether args set -name or --name (with or without =),
// up to a "--" that ends the flags.
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if !strings.HasPrefix(a, "-") {
			continue // a value or an argument, e.g. --name api
		}
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// dispatchResource runs a resource command's verb in the mode useAPI picks.
func dispatchResource(noun string, args []string, env cliEnv, db, api map[string]func([]string, cliEnv) error) error {
	var rest []string
	if len(args) > 0 {
		rest = args[1:]
	}
	viaAPI, err := useAPI(noun, rest, env)
	if err != nil {
		return err
	}
	if viaAPI {
		if len(args) > 0 && db[args[0]] != nil && api[args[0]] == nil {
			return fmt.Errorf("%s %s works on the database file only (--db); over the API use: %s", noun, args[0], verbList(api))
		}
		return dispatch(noun, args, env, api)
	}
	if len(args) > 0 && api[args[0]] != nil && db[args[0]] == nil {
		return fmt.Errorf("%s %s works over the API only (--api or %s); on the database use: %s", noun, args[0], envAPIURL, verbList(db))
	}
	return dispatch(noun, args, env, db)
}

func verbList(verbs map[string]func([]string, cliEnv) error) string {
	names := make([]string, 0, len(verbs))
	for v := range verbs {
		names = append(names, v)
	}
	slices.Sort(names)
	return strings.Join(names, "|")
}

// listFilter is a list command's flag passed on as the query parameter of
// the same name (e.g. tasks list --status pending).
type listFilter struct{ name, usage string }

// apiListCommand is "voxbridge <noun> list [--json] [filters]" over the
// API: every page, as JSON (what the API answered, secrets never included)
// or as the table table writes.
func apiListCommand[T any](noun string, table func(*tabwriter.Writer, []T), filters ...listFilter) func([]string, cliEnv) error {
	return func(args []string, env cliEnv) error {
		fs := flag.NewFlagSet(noun+" list", flag.ContinueOnError)
		fs.SetOutput(env.stderr)
		client := apiFlags(fs, env)
		asJSON := fs.Bool("json", false, "print the API's answer as JSON (secrets are never included)")
		values := make([]*string, len(filters))
		for i, f := range filters {
			values[i] = fs.String(f.name, "", f.usage)
		}
		if _, err := parseArgs(fs, args, 0); err != nil {
			return err
		}
		c, err := client()
		if err != nil {
			return err
		}
		path, q := "/v1/"+noun, url.Values{}
		for i, f := range filters {
			if *values[i] != "" {
				q.Set(f.name, *values[i])
			}
		}
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		if *asJSON {
			all, err := listAll[json.RawMessage](c, path)
			if err != nil {
				return err
			}
			return printJSON(env.stdout, all)
		}
		all, err := listAll[T](c, path)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		table(tw, all)
		return tw.Flush()
	}
}

// maxResourceFile bounds a resource file read by create.
const maxResourceFile = 1 << 20

// readResourceFile reads a JSON or YAML (.yaml, .yml) object for the API:
// the body as JSON, and the value of idField in it ("" when absent).
func readResourceFile(path, idField string) (string, json.RawMessage, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxResourceFile+1))
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > maxResourceFile {
		return "", nil, fmt.Errorf("%s: larger than %d bytes", path, maxResourceFile)
	}
	var doc map[string]any
	if ext := strings.ToLower(filepath.Ext(path)); ext == ".yaml" || ext == ".yml" {
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return "", nil, fmt.Errorf("%s: yaml: %w", path, err)
		}
	} else {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber() // keep numbers as written; the server checks them
		if err := dec.Decode(&doc); err != nil {
			return "", nil, fmt.Errorf("%s: json: %w", path, err)
		}
	}
	if doc == nil {
		return "", nil, fmt.Errorf("%s: want an object", path)
	}
	body, err := json.Marshal(doc)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", path, err)
	}
	id, _ := doc[idField].(string)
	return id, body, nil
}

// trunkID returns the id of the trunk named or identified by key.
func trunkID(c *apiClient, key string) (string, error) {
	trunks, err := listAll[struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}](c, "/v1/trunks")
	if err != nil {
		return "", err
	}
	for _, t := range trunks {
		if t.ID == key || t.Name == key {
			return t.ID, nil
		}
	}
	return "", fmt.Errorf("no trunk %q", key)
}

// trunksDeleteAPI is "trunks delete NAME|ID" over the API, which deletes
// by id: the name (what the database mode takes) is looked up first.
func trunksDeleteAPI(args []string, env cliEnv) error {
	fs := flag.NewFlagSet("trunks delete", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	client := apiFlags(fs, env)
	arg, err := parseOne(fs, args, errors.New("usage: voxbridge trunks delete <trunk name or id>"))
	if err != nil {
		return err
	}
	c, err := client()
	if err != nil {
		return err
	}
	id, err := trunkID(c, arg)
	if err != nil {
		return err
	}
	if err := c.do("DELETE", "/v1/trunks/"+url.PathEscape(id), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "trunk %s deleted\n", arg)
	return nil
}
