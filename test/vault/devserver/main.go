// Command vault-dev: a Vault server in development mode (in-memory storage, initialized and
// unsealed at start, a known root token) built from Vault's own core, HTTP API and plugins, with
// only the plugins Airlock's tests use: the database secrets engine with the PostgreSQL plugin,
// the Kubernetes auth method and KV; external plugins (the SSH secrets engine, built apart: see
// build-vault.sh) from -plugin-dir. Upstream's CLI (package command) links every builtin plugin,
// and no published sdk release compiles both Vault's core and all of them.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	aeadwrapper "github.com/hashicorp/go-kms-wrapping/wrappers/aead/v2"
	hclog "github.com/hashicorp/go-hclog"
	credKube "github.com/hashicorp/vault-plugin-auth-kubernetes"
	logicalKv "github.com/hashicorp/vault-plugin-secrets-kv"
	logicalDb "github.com/hashicorp/vault/builtin/logical/database"
	"github.com/hashicorp/vault/builtin/plugin"
	"github.com/hashicorp/vault/helper/namespace"
	vaulthttp "github.com/hashicorp/vault/http"
	"github.com/hashicorp/vault/internalshared/configutil"
	dbPostgres "github.com/hashicorp/vault/plugins/database/postgresql"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/physical/inmem"
	"github.com/hashicorp/vault/vault"
	vaultseal "github.com/hashicorp/vault/vault/seal"
	"github.com/hashicorp/vault/version"
)

// registry is the builtin plugin catalog: what `vault secrets enable` / `auth enable` and the
// database engine's plugin_name resolve to.
type registry struct{}

var (
	credentialPlugins = map[string]logical.Factory{"kubernetes": credKube.Factory}
	secretsPlugins    = map[string]logical.Factory{"kv": logicalKv.Factory}
	databasePlugins   = map[string]func() (interface{}, error){"postgresql-database-plugin": dbPostgres.New}
)

func (registry) Get(name string, t consts.PluginType) (func() (interface{}, error), bool) {
	switch t {
	case consts.PluginTypeCredential:
		if f, ok := credentialPlugins[name]; ok {
			return func() (interface{}, error) { return f, nil }, true
		}
	case consts.PluginTypeSecrets:
		if f, ok := secretsPlugins[name]; ok {
			return func() (interface{}, error) { return f, nil }, true
		}
	case consts.PluginTypeDatabase:
		if f, ok := databasePlugins[name]; ok {
			return f, true
		}
	}
	return nil, false
}

func (registry) Keys(t consts.PluginType) []string {
	var keys []string
	switch t {
	case consts.PluginTypeCredential:
		for k := range credentialPlugins {
			keys = append(keys, k)
		}
	case consts.PluginTypeSecrets:
		for k := range secretsPlugins {
			keys = append(keys, k)
		}
	case consts.PluginTypeDatabase:
		for k := range databasePlugins {
			keys = append(keys, k)
		}
	}
	return keys
}

func (r registry) Contains(name string, t consts.PluginType) bool {
	_, ok := r.Get(name, t)
	return ok
}

func (r registry) DeprecationStatus(name string, t consts.PluginType) (consts.DeprecationStatus, bool) {
	if r.Contains(name, t) {
		return consts.Supported, true
	}
	return consts.Unknown, false
}

func (registry) IsBuiltinEntPlugin(string, consts.PluginType) bool { return false }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "vault-dev:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("listen", "127.0.0.1:8200", "address to serve the HTTP API on")
	rootToken := flag.String("root-token", "root", "ID of the root token")
	certFile := flag.String("tls-cert", "", "serve TLS with this certificate (PEM); plain HTTP when absent")
	keyFile := flag.String("tls-key", "", "private key (PEM) of -tls-cert")
	logLevel := flag.String("log-level", "info", "trace, debug, info, warn or error")
	pluginDir := flag.String("plugin-dir", "", "directory of external plugin binaries (sys/plugins/catalog registers them)")
	showVersion := flag.Bool("version", false, "print the Vault version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(version.GetVersion().FullVersionNumber(false))
		return nil
	}
	logger := hclog.New(&hclog.LoggerOptions{Name: "vault", Level: hclog.LevelFromString(*logLevel), Output: os.Stderr})

	storage, err := inmem.NewInmem(nil, logger)
	if err != nil {
		return err
	}
	access, err := vaultseal.NewAccessFromWrapper(logger, aeadwrapper.NewShamirWrapper(), vault.SealConfigTypeShamir.String())
	if err != nil {
		return err
	}
	core, err := vault.NewCore(&vault.CoreConfig{
		Physical:           storage,
		StorageType:        "inmem",
		Seal:               vault.NewDefaultSeal(access),
		Logger:             logger,
		DisableMlock:       true,
		BuiltinRegistry:    registry{},
		PluginDirectory:    *pluginDir,
		CredentialBackends: map[string]logical.Factory{"plugin": plugin.Factory, "kubernetes": credKube.Factory},
		LogicalBackends: map[string]logical.Factory{
			"plugin":   plugin.Factory,
			"database": logicalDb.Factory,
			"kv":       logicalKv.Factory,
		},
	})
	if err != nil {
		return fmt.Errorf("core: %w", err)
	}
	ctx := namespace.ContextWithNamespace(context.Background(), namespace.RootNamespace)
	init, err := core.Initialize(ctx, &vault.InitParams{
		BarrierConfig: &vault.SealConfig{SecretShares: 1, SecretThreshold: 1, Name: "shamir", StoredShares: 1},
	})
	if err != nil {
		return fmt.Errorf("initialize: %w", err)
	}
	if err := core.UnsealWithStoredKeys(ctx); err != nil {
		return fmt.Errorf("unseal: %w", err)
	}
	if core.Sealed() {
		if ok, err := core.Unseal(init.SecretShares[0]); err != nil || !ok {
			return fmt.Errorf("unseal: %v", err)
		}
	}
	for i := 0; ; i++ {
		if leader, _, _, err := core.Leader(); errors.Is(err, vault.ErrHANotEnabled) || (err == nil && leader) {
			break
		}
		if i == 50 {
			return errors.New("core did not become active")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if *rootToken != "" {
		resp, err := core.HandleRequest(ctx, &logical.Request{
			Operation: logical.UpdateOperation, ClientToken: init.RootToken, Path: "auth/token/create",
			Data: map[string]interface{}{"id": *rootToken, "policies": []string{"root"}, "no_parent": true, "no_default_policy": true},
		})
		if err != nil || resp == nil || resp.Auth == nil {
			return fmt.Errorf("root token: %v %v", err, resp)
		}
		if _, err := core.HandleRequest(ctx, &logical.Request{
			Operation: logical.UpdateOperation, ClientToken: init.RootToken, Path: "auth/token/revoke-self",
		}); err != nil {
			return fmt.Errorf("revoke the initial root token: %w", err)
		}
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	scheme := "http"
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return err
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		scheme = "https"
	}
	handler := vaulthttp.Handler.Handler(&vault.HandlerProperties{
		Core:           core,
		ListenerConfig: &configutil.Listener{Type: "tcp", Address: ln.Addr().String()},
	})
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute}
	go func() { _ = srv.Serve(ln) }()
	fmt.Printf("vault-dev %s ready on %s://%s\n", version.GetVersion().FullVersionNumber(false), scheme, ln.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutdown)
	return core.Shutdown()
}
