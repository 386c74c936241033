package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/voxbridge/voxbridge/sip"
	"github.com/voxbridge/voxbridge/store"
)

// cliEnv is what the management commands read and write: tests give them
// buffers and a fake environment.
type cliEnv struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	// stdinTerminal says whether stdin is a person typing (prompt) or a
	// pipe (read silently).
	stdinTerminal bool
}

func osCLIEnv() cliEnv {
	term := false
	if fi, err := os.Stdin.Stat(); err == nil {
		term = fi.Mode()&os.ModeCharDevice != 0
	}
	return cliEnv{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv, stdinTerminal: term}
}

// dbFlag adds --db with serve's default and environment variable.
func dbFlag(fs *flag.FlagSet, env cliEnv) *string {
	def := defaultServeConfig().DB
	if v := env.getenv("VOXBRIDGE_DB"); v != "" {
		def = v
	}
	return fs.String("db", def, "SQLite database file (env VOXBRIDGE_DB)")
}

// targetFlags adds the flags of where a command works: --db (the
// database) or, viaAPI, the API's address and key. The other is nil.
func targetFlags(fs *flag.FlagSet, env cliEnv, viaAPI bool) (db *string, client func() (*apiClient, error)) {
	if viaAPI {
		return nil, apiFlags(fs, env)
	}
	return dbFlag(fs, env), nil
}

func openCLIStore(path string) (*store.DB, error) {
	db, err := store.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	return db, nil
}

// pages collects every page of a store list.
func pages[T any](ctx context.Context, list func(context.Context, store.ListOptions) ([]T, string, error)) ([]T, error) {
	all := []T{}
	for tok := ""; ; {
		page, next, err := list(ctx, store.ListOptions{PageSize: store.MaxPageSize, PageToken: tok})
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if tok = next; tok == "" {
			return all, nil
		}
	}
}

// listCommand is "voxbridge <noun> list [--json]": every record, as JSON
// or as the table that table writes.
func listCommand[T any](noun string, list func(context.Context, *store.DB) ([]T, error),
	table func(*tabwriter.Writer, *store.DB, []T) error) func([]string, cliEnv) error {
	return func(args []string, env cliEnv) error {
		fs := flag.NewFlagSet(noun+" list", flag.ContinueOnError)
		fs.SetOutput(env.stderr)
		db := dbFlag(fs, env)
		asJSON := fs.Bool("json", false, "print JSON (secrets are never shown)")
		if _, err := parseArgs(fs, args, 0); err != nil {
			return err
		}
		st, err := openCLIStore(*db)
		if err != nil {
			return err
		}
		defer st.Close()
		all, err := list(context.Background(), st)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env.stdout, all)
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
		if err := table(tw, st, all); err != nil {
			return err
		}
		return tw.Flush()
	}
}

// deleteCommand is "voxbridge <noun> delete <key>"; del returns what to
// tell the user.
func deleteCommand(noun, key string, del func(context.Context, *store.DB, string) (string, error)) func([]string, cliEnv) error {
	return func(args []string, env cliEnv) error {
		fs := flag.NewFlagSet(noun+" delete", flag.ContinueOnError)
		fs.SetOutput(env.stderr)
		db := dbFlag(fs, env)
		arg, err := parseOne(fs, args, fmt.Errorf("usage: voxbridge %s delete [--db FILE] <%s>", noun, key))
		if err != nil {
			return err
		}
		st, err := openCLIStore(*db)
		if err != nil {
			return err
		}
		defer st.Close()
		msg, err := del(context.Background(), st, arg)
		if err != nil {
			return err
		}
		fmt.Fprintln(env.stdout, msg)
		return nil
	}
}

// readPassword returns the flag's value, or reads one line from stdin:
// with a prompt when a person is typing (it echoes; prefer a pipe or
// --password-stdin in scripts), silently from a pipe.
func readPassword(flagValue string, what string, env cliEnv) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if env.stdinTerminal {
		fmt.Fprintf(env.stderr, "%s (input is visible): ", what)
	}
	line, err := bufio.NewReader(env.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read %s: %w", what, err)
	}
	pw := strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", fmt.Errorf("no %s given: use --password or pipe it on stdin", what)
	}
	return pw, nil
}

// describeErr turns store errors into messages for a person.
func describeErr(what string, err error) error {
	msg := err.Error()
	switch {
	case errors.Is(err, store.ErrConflict):
		if i := strings.Index(msg, "user name "); i >= 0 {
			return fmt.Errorf("%s: %s", what, msg[i:])
		}
		return fmt.Errorf("%s already exists", what)
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("no %s", what)
	case errors.Is(err, store.ErrInvalid):
		if i := strings.Index(msg, store.ErrInvalid.Error()+": "); i >= 0 {
			msg = msg[i+len(store.ErrInvalid.Error())+2:]
		}
		return fmt.Errorf("%s: %s", what, msg)
	}
	return err
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// runExtensions serves "voxbridge extensions": add|list|delete on the
// database file, list|create|delete over the API (see useAPI for which).
func runExtensions(args []string, env cliEnv) error {
	return dispatchResource("extensions", args, env, map[string]func([]string, cliEnv) error{
		"add": extensionsAdd, "list": extensionsList, "delete": extensionsDelete,
	}, map[string]func([]string, cliEnv) error{
		"add":    extensionsAddAPI,
		"list":   apiListCommand("extensions", extensionTable),
		"create": extensionsCreate,
		"delete": apiDeleteCommand("extensions"),
	})
}

// extensionsCreate stores an extension file (the API's extension object,
// with its write-only password).
var extensionsCreate = fileCreateCommand("extensions", "the API's extension object", func(path string) (string, any, error) {
	return readResourceFile(path, "number")
})

var extensionsAdd, extensionsAddAPI = extensionsAddVia(false), extensionsAddVia(true)

// extensionsAddVia is "extensions add" on the database or, with the same
// flags, over the API (where the server's realm hashes the password).
func extensionsAddVia(viaAPI bool) func([]string, cliEnv) error {
	return func(args []string, env cliEnv) error {
		fs := flag.NewFlagSet("extensions add", flag.ContinueOnError)
		fs.SetOutput(env.stderr)
		db, client := targetFlags(fs, env, viaAPI)
		number := fs.String("number", "", "extension number, 1 to 20 digits (required)")
		username := fs.String("username", "", "digest user name the phone logs in with (default: the number)")
		name := fs.String("name", "", "display name")
		password := fs.String("password", "", "password (default: read from stdin); at least 8 characters")
		realm := new(string)
		if !viaAPI {
			realm = fs.String("realm", sip.DefaultRealm, "digest realm of the server")
		}
		callOut := fs.Bool("call-out", false, "allow calls to outside numbers through trunks")
		disabled := fs.Bool("disabled", false, "create it disabled")
		asJSON := fs.Bool("json", false, "print the stored extension as JSON (the password is never shown)")
		fs.Usage = func() {
			fmt.Fprintln(fs.Output(), "Usage: voxbridge extensions add --number N [flags]")
			fs.PrintDefaults()
		}
		if err := parseNumber(fs, args, number); err != nil {
			return err
		}
		pw, err := readPassword(*password, "password", env)
		if err != nil {
			return err
		}
		e := &store.Extension{Number: *number, Username: *username, DisplayName: *name, CallOut: *callOut, Enabled: !*disabled}
		if viaAPI {
			c, err := client()
			if err != nil {
				return err
			}
			body := map[string]any{"number": e.Number, "username": e.Username, "display_name": e.DisplayName,
				"password": pw, "call_out": e.CallOut, "enabled": e.Enabled}
			var stored store.Extension
			if err := c.do("POST", "/v1/extensions", body, &stored); err != nil {
				return fmt.Errorf("extension %s: %w", e.Number, err)
			}
			e = &stored
		} else {
			if err := e.SetPassword(*realm, pw); err != nil {
				return describeErr("extension "+*number, err)
			}
			st, err := openCLIStore(*db)
			if err != nil {
				return err
			}
			defer st.Close()
			if err := st.CreateExtension(context.Background(), e); err != nil {
				return describeErr("extension "+*number, err)
			}
		}
		if *asJSON {
			return printJSON(env.stdout, e)
		}
		fmt.Fprintf(env.stdout, "extension %s added: user name %q, realm %q\n", e.Number, e.Username, e.Realm)
		return nil
	}
}

var extensionsList = listCommand("extensions",
	func(ctx context.Context, st *store.DB) ([]store.Extension, error) {
		return pages(ctx, st.ListExtensions)
	},
	func(tw *tabwriter.Writer, _ *store.DB, all []store.Extension) error {
		extensionTable(tw, all)
		return nil
	})

func extensionTable(tw *tabwriter.Writer, all []store.Extension) {
	fmt.Fprintln(tw, "NUMBER\tUSERNAME\tNAME\tCALL OUT\tENABLED\tREALM")
	for _, e := range all {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Number, e.Username, e.DisplayName, yesNo(e.CallOut), yesNo(e.Enabled), e.Realm)
	}
}

var extensionsDelete = deleteCommand("extensions", "number", func(ctx context.Context, st *store.DB, number string) (string, error) {
	if err := st.DeleteExtension(ctx, number); err != nil {
		return "", describeErr("extension "+number, err)
	}
	return "extension " + number + " deleted, with its registrations", nil
})
