package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/voxbridge/voxbridge/sip"
	"github.com/voxbridge/voxbridge/store"
)

// loadAccount is one extension the load's callers authenticate as: every
// call then goes INVITE → 407 → INVITE with credentials → 200 → ACK.
type loadAccount struct {
	Username, Password string
}

// loadExtensionBase is the first number of the extensions load creates:
// high, so it is unlikely to clash with an operator's own.
const loadExtensionBase = 880000

// prepareLoadAccounts creates (or resets) n enabled extensions in the
// server's database at dbPath, named load880000, load880001…, each with
// its own password, for realm. A running server sees them at once: it
// reads credentials from the database for every challenge answered.
func prepareLoadAccounts(ctx context.Context, dbPath, realm string, n int) ([]loadAccount, error) {
	if n < 1 || n > 10000 {
		return nil, fmt.Errorf("load: --auth-extensions %d: want 1 to 10000", n)
	}
	if dbPath == "" {
		return nil, errors.New("load: --auth-extensions needs --auth-db, the server's database")
	}
	db, err := store.Open(dbPath)
	if err != nil {
		return nil, fmt.Errorf("load: open %s: %w", dbPath, err)
	}
	defer db.Close()
	accts := make([]loadAccount, n)
	for i := range accts {
		number := fmt.Sprint(loadExtensionBase + i)
		a := loadAccount{Username: "load" + number, Password: "load-secret-" + number}
		e := &store.Extension{Number: number, Username: a.Username, DisplayName: "voxbridge load", Enabled: true}
		if err := e.SetPassword(realm, a.Password); err != nil {
			return nil, err
		}
		err := db.CreateExtension(ctx, e)
		if errors.Is(err, store.ErrConflict) {
			err = db.UpdateExtension(ctx, e)
		}
		if err != nil {
			return nil, fmt.Errorf("load: extension %s: %w", number, err)
		}
		accts[i] = a
	}
	return accts, nil
}

// defaultLoadRealm is the realm load's extensions are hashed for unless
// --auth-realm says otherwise; the server's default.
const defaultLoadRealm = sip.DefaultRealm
