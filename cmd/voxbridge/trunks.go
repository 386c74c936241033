package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/voxbridge/voxbridge/sip"
	"github.com/voxbridge/voxbridge/store"
)

// listFlag is a repeatable flag; each use may also hold a comma-separated
// list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

// headerFlag is a repeatable "Name: value" flag.
type headerFlag []store.Header

func (h *headerFlag) String() string { return fmt.Sprint(*h) }

func (h *headerFlag) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	if !ok {
		return fmt.Errorf("header %q is not \"Name: value\"", v)
	}
	*h = append(*h, store.Header{Name: strings.TrimSpace(name), Value: strings.TrimSpace(value)})
	return nil
}

// runTrunks serves "voxbridge trunks": add|list|delete on the database
// file, list|create|delete over the API (see useAPI for which).
func runTrunks(args []string, env cliEnv) error {
	return dispatchResource("trunks", args, env, map[string]func([]string, cliEnv) error{
		"add": trunksAdd, "list": trunksList, "delete": trunksDelete,
	}, map[string]func([]string, cliEnv) error{
		"add": trunksAddAPI, "list": trunksListAPI, "create": trunksCreate, "delete": trunksDeleteAPI,
	})
}

var trunksListAPI = apiListCommand("trunks", func(tw *tabwriter.Writer, all []store.Trunk) {
	fmt.Fprint(tw, "ID\t")
	trunkTable(tw, all, func(t store.Trunk) { fmt.Fprintf(tw, "%s\t", t.ID) })
})

// trunksCreate stores a trunk file (the API's trunk object; passwords
// are write-only fields of it).
var trunksCreate = fileCreateCommand("trunks", "the API's trunk object; --replace needs its id", func(path string) (string, any, error) {
	id, body, err := readResourceFile(path, "id")
	if err == nil && id == "" {
		var t struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(body, &t)
		id = t.Name
	}
	return id, body, err
})

var trunksAdd, trunksAddAPI = trunksAddVia(false), trunksAddVia(true)

// trunksAddVia is "trunks add" on the database or, with the same flags,
// over the API (where the server's realm hashes the inbound password).
func trunksAddVia(viaAPI bool) func([]string, cliEnv) error {
	return func(args []string, env cliEnv) error {
		fs := flag.NewFlagSet("trunks add", flag.ContinueOnError)
		fs.SetOutput(env.stderr)
		db, client := targetFlags(fs, env, viaAPI)
		var t store.Trunk
		var inbound, prefixes listFlag
		var headers headerFlag
		fs.StringVar(&t.Name, "name", "", "trunk name (required)")
		fs.IntVar(&t.Priority, "priority", 0, "outbound failover order: lower is tried first")
		disabled := fs.Bool("disabled", false, "create it disabled")
		fs.Var(&inbound, "inbound-addr", "IP or CIDR the carrier's calls come from (repeatable)")
		fs.StringVar(&t.InboundUsername, "inbound-username", "", "user name the carrier authenticates to us with")
		inPassword := fs.String("inbound-password", "", "password for --inbound-username (default: read from stdin)")
		realm := new(string)
		if !viaAPI {
			realm = fs.String("realm", sip.DefaultRealm, "digest realm of the server, for the inbound credentials")
		}
		fs.StringVar(&t.Host, "host", "", "carrier host for outbound calls (empty: inbound only)")
		fs.IntVar(&t.Port, "port", 0, "carrier port (default 5060, or 5061 for TLS)")
		transport := fs.String("transport", "udp", "udp, tcp or tls")
		fs.StringVar(&t.Username, "username", "", "user name answered to the carrier's 401/407")
		password := fs.String("password", "", "password for --username (default: read from stdin)")
		fs.BoolVar(&t.Register, "register", false, "register with the carrier")
		fs.IntVar(&t.RegisterExpires, "register-expires", 0, "registration expiry to ask for, seconds (default: 3600)")
		fs.StringVar(&t.CallerID, "caller-id", "", "caller ID (From user) on outbound calls")
		fs.StringVar(&t.CallerName, "caller-name", "", "caller name (From display name) on outbound calls")
		fs.StringVar(&t.PAI, "pai", "", "P-Asserted-Identity: a number or a SIP URI")
		format := fs.String("number-format", "e164", "e164 (+14155550100), e164_noplus (14155550100) or as_dialed")
		fs.StringVar(&t.TechPrefix, "tech-prefix", "", "digits put before every dialed number")
		fs.Var(&headers, "header", `extra header on outbound INVITEs, "Name: value" (repeatable)`)
		fs.IntVar(&t.MaxCalls, "max-calls", 0, "concurrent outbound calls allowed (0: no limit)")
		fs.Var(&prefixes, "allow-prefix", "outbound destinations allowed, E.164 prefix (repeatable; none: any)")
		asJSON := fs.Bool("json", false, "print the stored trunk as JSON (passwords are never shown)")
		fs.Usage = func() {
			fmt.Fprintln(fs.Output(), "Usage: voxbridge trunks add --name NAME [flags]")
			fs.PrintDefaults()
		}
		_, err := parseArgs(fs, args, 0)
		if err != nil {
			return err
		}
		if t.Name == "" {
			return errors.New("trunks add: --name is required")
		}
		if t.Host == "" && len(inbound) == 0 && t.InboundUsername == "" {
			return errors.New("trunks add: give --host (outbound) and/or --inbound-addr or --inbound-username (inbound)")
		}
		t.Enabled = !*disabled
		t.InboundAddrs, t.AllowedPrefixes, t.Headers = inbound, prefixes, headers
		t.Transport, t.Format = store.TrunkTransport(*transport), store.NumberFormat(*format)
		// Only one password can come from stdin; the other must be a flag.
		if t.Username != "" && t.InboundUsername != "" && *password == "" && *inPassword == "" {
			return errors.New("trunks add: with both --username and --inbound-username, give --password or --inbound-password")
		}
		if t.Username != "" {
			if t.Password, err = readPassword(*password, "carrier password", env); err != nil {
				return err
			}
		}
		var inboundPW string
		if t.InboundUsername != "" {
			if inboundPW, err = readPassword(*inPassword, "inbound password", env); err != nil {
				return err
			}
		}
		if viaAPI {
			c, err := client()
			if err != nil {
				return err
			}
			body := struct {
				store.Trunk
				Password        string `json:"password,omitempty"`
				InboundPassword string `json:"inbound_password,omitempty"`
			}{Trunk: t, Password: t.Password, InboundPassword: inboundPW}
			var stored store.Trunk
			if err := c.do("POST", "/v1/trunks", body, &stored); err != nil {
				return fmt.Errorf("trunk %s: %w", t.Name, err)
			}
			if *asJSON {
				return printJSON(env.stdout, stored)
			}
			fmt.Fprintf(env.stdout, "trunk %s added (id %s)\n", stored.Name, stored.ID)
			return nil
		}
		if t.InboundUsername != "" {
			if err := t.SetInboundPassword(*realm, inboundPW); err != nil {
				return describeErr("trunk "+t.Name, err)
			}
		}
		st, err := openCLIStore(*db)
		if err != nil {
			return err
		}
		defer st.Close()
		if err := st.CreateTrunk(context.Background(), &t); err != nil {
			return describeErr("trunk "+t.Name, err)
		}
		if *asJSON {
			return printJSON(env.stdout, t.Redacted())
		}
		fmt.Fprintf(env.stdout, "trunk %s added (id %s)\n", t.Name, t.ID)
		return nil
	}
}

var trunksList = listCommand("trunks",
	func(ctx context.Context, st *store.DB) ([]store.Trunk, error) { return pages(ctx, st.ListTrunks) },
	func(tw *tabwriter.Writer, _ *store.DB, all []store.Trunk) error {
		trunkTable(tw, all, nil)
		return nil
	})

// trunkTable writes trunks as a table; lead, when set, writes leading
// columns of each row (their headers already written).
func trunkTable(tw *tabwriter.Writer, all []store.Trunk, lead func(store.Trunk)) {
	fmt.Fprintln(tw, "NAME\tPRIORITY\tENABLED\tOUTBOUND\tUSERNAME\tPASSWORD\tREGISTER\tINBOUND\tMAX CALLS")
	for _, t := range all {
		out := "-"
		if t.Host != "" {
			out = fmt.Sprintf("%s:%s:%d", t.Transport, t.Host, t.OutboundPort())
		}
		in := strings.Join(t.InboundAddrs, ",")
		if t.InboundUsername != "" {
			in = strings.TrimPrefix(in+",user "+t.InboundUsername, ",")
		}
		pw := "-"
		if t.HasPassword {
			pw = "set"
		}
		if lead != nil {
			lead(t)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\n", t.Name, t.Priority, yesNo(t.Enabled), out,
			dash(t.Username), pw, yesNo(t.Register), dash(in), t.MaxCalls)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

var trunksDelete = deleteCommand("trunks", "name", func(ctx context.Context, st *store.DB, name string) (string, error) {
	t, err := st.TrunkByName(ctx, name)
	if err != nil {
		return "", describeErr("trunk "+name, err)
	}
	if err := st.DeleteTrunk(ctx, t.ID); err != nil {
		return "", describeErr("trunk "+name, err)
	}
	return "trunk " + name + " deleted", nil
})
