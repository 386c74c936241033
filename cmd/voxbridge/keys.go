package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"text/tabwriter"
	"time"

	"github.com/voxbridge/voxbridge/api"
	"github.com/voxbridge/voxbridge/store"
)

// envAPIKey names the variable that seeds an API key at start (serve) and
// carries the key to the API commands (calls, flows). It is read from the
// environment only, never a flag, so the key stays out of ps and shell
// history.
const envAPIKey = "VOXBRIDGE_API_KEY"

// runKeys serves "voxbridge keys create|list|revoke": API keys, managed in
// the database directly (the API needs a key before it can be used).
func runKeys(args []string, env cliEnv) error {
	return dispatch("keys", args, env, map[string]func([]string, cliEnv) error{
		"create": keysCreate, "list": keysList, "revoke": keysRevoke,
	})
}

func keysCreate(args []string, env cliEnv) error {
	fs := flag.NewFlagSet("keys create", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	db := dbFlag(fs, env)
	name := fs.String("name", "", "what the key is for, e.g. ops or crm (required)")
	readOnly := fs.Bool("read-only", false, "the key may only read (GET); writes answer 403")
	asJSON := fs.Bool("json", false, "print the key and its record as JSON")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: voxbridge keys create --name NAME [--read-only] [--db FILE]")
		fs.PrintDefaults()
	}
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("keys create: --name is required")
	}
	role := store.RoleAdmin
	if *readOnly {
		role = store.RoleReadOnly
	}
	st, err := openCLIStore(*db)
	if err != nil {
		return err
	}
	defer st.Close()
	key, rec := api.NewKey(*name, role)
	if err := st.CreateAPIKey(context.Background(), rec); err != nil {
		return describeErr("key "+*name, err)
	}
	if *asJSON {
		return printJSON(env.stdout, struct {
			*store.APIKey
			Key string `json:"key"`
		}{rec, key})
	}
	// The key alone on stdout, so scripts can capture it; the rest to
	// stderr.
	fmt.Fprintln(env.stdout, key)
	fmt.Fprintf(env.stderr, "API key %q created (id %s, %s). It is shown only now; only its hash is stored.\n"+
		"Use it as: Authorization: Bearer <key>, or VOXBRIDGE_API_KEY for the voxbridge calls/flows commands.\n",
		rec.Name, rec.ID, rec.Role)
	return nil
}

func keysList(args []string, env cliEnv) error {
	fs := flag.NewFlagSet("keys list", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	db := dbFlag(fs, env)
	asJSON := fs.Bool("json", false, "print JSON")
	if _, err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	st, err := openCLIStore(*db)
	if err != nil {
		return err
	}
	defer st.Close()
	keys := []store.APIKey{}
	for tok := ""; ; {
		page, next, err := st.ListAPIKeys(context.Background(), store.ListOptions{PageSize: store.MaxPageSize, PageToken: tok})
		if err != nil {
			return err
		}
		keys = append(keys, page...)
		if next == "" {
			break
		}
		tok = next
	}
	if *asJSON {
		return printJSON(env.stdout, keys)
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tPREFIX\tROLE\tCREATED\tLAST USED\tREVOKED")
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\t%s…\t%s\t%s\t%s\t%s\n", k.ID, k.Name, k.Prefix, k.Role,
			k.TMCreate.Format(time.RFC3339), timeOrDash(k.TMLastUsed), timeOrDash(k.TMRevoke))
	}
	return tw.Flush()
}

func keysRevoke(args []string, env cliEnv) error {
	fs := flag.NewFlagSet("keys revoke", flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	db := dbFlag(fs, env)
	arg, err := parseOne(fs, args, errors.New("usage: voxbridge keys revoke [--db FILE] <id> (ids are in: voxbridge keys list)"))
	if err != nil {
		return err
	}
	st, err := openCLIStore(*db)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := st.RevokeAPIKey(context.Background(), arg); err != nil {
		return describeErr("key "+arg, err)
	}
	fmt.Fprintf(env.stdout, "key %s revoked\n", arg)
	return nil
}

func timeOrDash(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

// setupAPIKeys runs at start: it stores the VOXBRIDGE_API_KEY key (hashed,
// once) and, when no key exists, says how to make one, since every /v1
// request answers 401 until then.
func setupAPIKeys(ctx context.Context, db *store.DB, seed, dbPath string, log *slog.Logger) error {
	if seed != "" {
		stored, err := api.SeedKey(ctx, db, seed, envAPIKey)
		switch {
		case errors.Is(err, api.ErrKeyRevoked):
			log.Warn(envAPIKey+" holds a revoked key; it stays revoked", "err", err)
		case err != nil:
			return fmt.Errorf("%s: %w", envAPIKey, err)
		case stored:
			log.Info("API key from " + envAPIKey + " stored (hashed)")
		}
	}
	n, err := db.CountActiveAPIKeys(ctx)
	if err != nil {
		return err
	}
	if n == 0 {
		log.Warn("no API key yet: the HTTP API answers 401 to every /v1 request; create one with: voxbridge keys create --name ops --db " + dbPath)
	}
	return nil
}

// httpTLSConfig is the HTTP API's TLS configuration, or nil for plain
// HTTP; a certificate and a key go together.
func httpTLSConfig(cfg serveConfig) (*tls.Config, error) {
	switch {
	case cfg.HTTPTLSCert == "" && cfg.HTTPTLSKey == "":
		return nil, nil
	case cfg.HTTPTLSCert == "" || cfg.HTTPTLSKey == "":
		return nil, errors.New("http-tls-cert and http-tls-key must be given together")
	}
	cert, err := tls.LoadX509KeyPair(cfg.HTTPTLSCert, cfg.HTTPTLSKey)
	if err != nil {
		return nil, fmt.Errorf("http tls: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// httpURL is the API's base URL as clients reach it.
func httpURL(cfg serveConfig, addr net.Addr) string {
	if cfg.HTTPTLSCert != "" {
		return "https://" + addr.String()
	}
	return "http://" + addr.String()
}
