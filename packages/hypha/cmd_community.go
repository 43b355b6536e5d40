package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/univrs/hypha/provisioning"
	"golang.org/x/sys/unix"
)

func init() {
	register(command{
		name:    "community",
		summary: "create a community, invite boxes and stewards, sign manifest updates",
		run:     runCommunity,
	})
}

const communityUsage = `usage: hypha community <action> [flags]

actions:
  init           create a community directory (steward key, signed manifest, PSK, password hash)
  show           print the verified manifest of a community directory
  invite         sign an invite token for a new box or a new steward
  verify-invite  check an invite token against the community
  keygen         create a key for a future steward (give them its public key line)
  add-steward    propose the manifest update that adds an invited steward
  update         propose a manifest update (threshold, bootstrap peers, limits, remove a steward)
  sign           sign the pending update (it takes effect once enough stewards signed)
`

// commNow is the clock of the community commands; tests replace it.
var commNow = time.Now

func runCommunity(ctx context.Context, args []string) error {
	return communityMain(ctx, args, os.Stdin, os.Stdout)
}

func communityMain(_ context.Context, args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(os.Stderr, communityUsage)
		return flag.ErrHelp
	}
	action, args := args[0], args[1:]
	fs := flag.NewFlagSet("community "+action, flag.ContinueOnError)
	dir := fs.String("dir", "community", "community directory (holds the steward's secret key: keep it off shared disks)")
	switch action {
	case "init":
		name := fs.String("name", "", "community name (required)")
		bioregion := fs.String("bioregion", "", "bioregion, e.g. \"Upper Rhine\"")
		loc := fs.String("location", "", "latitude,longitude in degrees, e.g. 47.7,7.8")
		steward := fs.String("steward", "", "your name as founding steward")
		pwFile := fs.String("password-file", "", "file holding the steward password for the LAN page (else $HYPHA_STEWARD_PASSWORD, else a prompt)")
		peers := fs.String("bootstrap", "", "comma-separated bootstrap multiaddrs")
		encrypt := fs.Bool("encrypt-key", false, "encrypt steward.key with a passphrase ($HYPHA_STEWARD_KEY_PASSPHRASE, else a prompt)")
		if err := fs.Parse(args); err != nil {
			return err
		}
		if *name == "" {
			return fmt.Errorf("init: -name is required")
		}
		var l provisioning.Location
		if *loc != "" {
			var err error
			if l, err = commParseLocation(*loc); err != nil {
				return err
			}
		}
		pw, err := commReadPassword(*pwFile, stdin)
		if err != nil {
			return err
		}
		var pass string
		if *encrypt {
			if pass, err = commKeyPassphrase(stdin, true); err != nil {
				return err
			}
		}
		c, _, err := provisioning.Init(*dir, provisioning.InitOptions{
			Name: *name, Bioregion: *bioregion, Location: l, StewardName: *steward,
			Password: pw, KeyPassphrase: pass, BootstrapPeers: commSplitList(*peers), Now: commNow(),
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created community %q (id %s) in %s\n", c.Manifest.Name, c.ID(), *dir)
		fmt.Fprintf(stdout, "  steward key %s (secret: back it up, never put it on a box)\n", filepath.Join(*dir, provisioning.StewardKey))
		fmt.Fprintf(stdout, "  mesh key fingerprint %s\n", c.PSK.Fingerprint())
		fmt.Fprintf(stdout, "next: hypha image --community %s ...\n", *dir)
		return nil
	case "show", "verify":
		if err := fs.Parse(args); err != nil {
			return err
		}
		c, err := provisioning.OpenDir(*dir)
		if err != nil {
			return err
		}
		commPrintManifest(stdout, c)
		return commPrintPending(stdout, *dir, c)
	case "invite":
		role := fs.String("role", provisioning.RoleBox, "box or steward")
		subject := fs.String("key", "", "public key (ed25519:...) of the new steward, or of the box when known")
		name := fs.String("name", "", "name of the box or person")
		ttl := fs.Duration("ttl", 72*time.Hour, "how long the invite is valid (at most 720h)")
		if err := fs.Parse(args); err != nil {
			return err
		}
		c, priv, err := commOpenWithKey(*dir)
		if err != nil {
			return err
		}
		var sub provisioning.PublicKey
		if *subject != "" {
			if sub, err = provisioning.ParsePublicKey(*subject); err != nil {
				return err
			}
		}
		tok, err := provisioning.NewInvite(c.Manifest, priv, *role, sub, *name, *ttl, commNow())
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, tok)
		return nil
	case "verify-invite":
		if err := fs.Parse(args); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return fmt.Errorf("verify-invite: want one TOKEN argument")
		}
		c, err := provisioning.OpenDir(*dir)
		if err != nil {
			return err
		}
		inv, err := provisioning.VerifyInvite(c.Manifest, fs.Arg(0), commNow())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "valid %s invite for %q (%s), issued by %s, expires %s\n",
			inv.Role, c.Manifest.Name, inv.Name, inv.Issuer, inv.Expires.Format(time.RFC3339))
		return nil
	case "keygen":
		out := fs.String("out", "steward.key", "where to write the new private key (mode 0600)")
		encrypt := fs.Bool("encrypt", false, "encrypt the key with a passphrase ($HYPHA_STEWARD_KEY_PASSPHRASE, else a prompt)")
		if err := fs.Parse(args); err != nil {
			return err
		}
		priv, err := provisioning.NewStewardKey()
		if err != nil {
			return err
		}
		var b []byte
		if *encrypt {
			pass, perr := commKeyPassphrase(stdin, true)
			if perr != nil {
				return perr
			}
			b, err = provisioning.EncryptStewardKey(priv, pass)
		} else {
			b, err = provisioning.EncodeStewardKey(priv)
		}
		if err != nil {
			return err
		}
		f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		if _, err := f.Write(b); err != nil {
			f.Close()
			return fmt.Errorf("keygen: %w", err)
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("keygen: %w", err)
		}
		fmt.Fprintln(stdout, provisioning.PublicKey(priv.Public().(ed25519.PublicKey)))
		return nil
	case "add-steward":
		token := fs.String("invite", "", "steward invite token (from hypha community invite -role steward)")
		if err := fs.Parse(args); err != nil {
			return err
		}
		c, priv, err := commOpenWithKey(*dir)
		if err != nil {
			return err
		}
		edit, err := provisioning.AddStewardFromInvite(c.Manifest, *token, commNow())
		if err != nil {
			return err
		}
		return commPropose(stdout, *dir, priv, edit)
	case "update":
		threshold := fs.Int("threshold", 0, "new steward threshold (0 keeps it)")
		peers := fs.String("bootstrap", "", "replace the bootstrap peers (comma-separated multiaddrs; \"-\" clears)")
		remove := fs.String("remove-steward", "", "public key of a steward to remove")
		debt := fs.Int64("debt-limit", -1, "new debt limit (-1 keeps it)")
		verifiers := fs.String("verifiers", "", "replace the verifier peer IDs (comma-separated; \"-\" clears)")
		if err := fs.Parse(args); err != nil {
			return err
		}
		_, priv, err := commOpenWithKey(*dir)
		if err != nil {
			return err
		}
		return commPropose(stdout, *dir, priv, func(m *provisioning.Manifest) error {
			if *threshold > 0 {
				m.StewardThreshold = *threshold
			}
			if *peers != "" {
				m.BootstrapPeers = commSplitList(*peers)
			}
			if *verifiers != "" {
				m.Verifiers.Members = commSplitList(*verifiers)
			}
			if *debt >= 0 {
				m.Credit.DebtLimit = *debt
			}
			if *remove != "" {
				k, err := provisioning.ParsePublicKey(*remove)
				if err != nil {
					return err
				}
				kept := m.Stewards[:0]
				for _, s := range m.Stewards {
					if !s.PublicKey.Equal(k) {
						kept = append(kept, s)
					}
				}
				if len(kept) == len(m.Stewards) {
					return fmt.Errorf("%s is not a steward", k)
				}
				m.Stewards = kept
			}
			return nil
		})
	case "sign":
		if err := fs.Parse(args); err != nil {
			return err
		}
		priv, err := commLoadKey(*dir, stdin)
		if err != nil {
			return err
		}
		done, err := provisioning.SignPending(*dir, priv)
		if err != nil {
			return err
		}
		commReportUpdate(stdout, *dir, done)
		return nil
	default:
		fmt.Fprint(os.Stderr, communityUsage)
		return fmt.Errorf("unknown action %q", action)
	}
}

func commPropose(w io.Writer, dir string, priv ed25519.PrivateKey, edit func(*provisioning.Manifest) error) error {
	done, err := provisioning.ProposeUpdate(dir, priv, commNow(), edit)
	if err != nil {
		return err
	}
	commReportUpdate(w, dir, done)
	return nil
}

func commReportUpdate(w io.Writer, dir string, done bool) {
	if done {
		c, err := provisioning.OpenDir(dir)
		if err == nil {
			fmt.Fprintf(w, "manifest serial %d is in effect; boxes take it with the next image or update\n", c.Manifest.Serial)
		}
		return
	}
	fmt.Fprintf(w, "update waiting for more steward signatures in %s; each steward runs: hypha community sign -dir DIR\n",
		filepath.Join(dir, provisioning.PendingFile))
}

func commOpenWithKey(dir string) (*provisioning.Community, ed25519.PrivateKey, error) {
	c, err := provisioning.OpenDir(dir)
	if err != nil {
		return nil, nil, err
	}
	priv, err := commLoadKey(dir, os.Stdin)
	if err != nil {
		return nil, nil, err
	}
	return c, priv, nil
}

// commLoadKey loads dir's steward key, asking for the passphrase of an
// encrypted key ($HYPHA_STEWARD_KEY_PASSPHRASE, else a terminal prompt).
func commLoadKey(dir string, stdin io.Reader) (ed25519.PrivateKey, error) {
	priv, err := provisioning.LoadStewardKey(dir, os.Getenv("HYPHA_STEWARD_KEY_PASSPHRASE"))
	if !errors.Is(err, provisioning.ErrKeyEncrypted) {
		return priv, err
	}
	pass, perr := commKeyPassphrase(stdin, false)
	if perr != nil {
		return nil, fmt.Errorf("%w: %v", err, perr)
	}
	return provisioning.LoadStewardKey(dir, pass)
}

// commKeyPassphrase reads the steward key passphrase from the environment
// or, on a terminal, a prompt (twice when confirm).
func commKeyPassphrase(stdin io.Reader, confirm bool) (string, error) {
	if p := os.Getenv("HYPHA_STEWARD_KEY_PASSPHRASE"); p != "" {
		return p, nil
	}
	f, ok := stdin.(*os.File)
	if !ok || !fileIsTerminal(f) {
		return "", fmt.Errorf("steward key passphrase: set HYPHA_STEWARD_KEY_PASSPHRASE or run on a terminal")
	}
	first, err := commPromptNoEcho(f, "steward key passphrase: ")
	if err != nil || !confirm {
		return first, err
	}
	second, err := commPromptNoEcho(f, "again: ")
	if err != nil {
		return "", err
	}
	if first != second {
		return "", fmt.Errorf("steward key passphrase: the two entries differ")
	}
	return first, nil
}

func commPrintManifest(w io.Writer, c *provisioning.Community) {
	m := c.Manifest
	fmt.Fprintf(w, "community  %s (id %s), serial %d, issued %s\n", m.Name, m.CommunityID, m.Serial, m.IssuedAt.Format(time.RFC3339))
	if m.Bioregion != "" {
		fmt.Fprintf(w, "bioregion  %s\n", m.Bioregion)
	}
	fmt.Fprintf(w, "location   %.5f, %.5f\n", m.Location.Lat, m.Location.Lon)
	fmt.Fprintf(w, "stewards   %d, updates need %d signature(s)\n", len(m.Stewards), m.StewardThreshold)
	for _, s := range m.Stewards {
		fmt.Fprintf(w, "  %-16s %s\n", s.Name, s.PublicKey)
	}
	cr := m.Credit
	fmt.Fprintf(w, "credit     unit %s, debt limit %d, credit limit %d, commons %q gets %.1f%%\n",
		cr.Unit, cr.DebtLimit, cr.CreditLimit, cr.CommonsAccount, cr.CommonsShare*100)
	fmt.Fprintf(w, "pricing    %d/%d %s per million prompt/completion tokens, solar discount %.0f%%\n",
		cr.Pricing.PromptPerMTok, cr.Pricing.CompletionPerMTok, cr.Unit, cr.Pricing.SolarDiscount*100)
	fmt.Fprintf(w, "verifiers  committee %d, challenge rate %.1f%%, %d members\n",
		m.Verifiers.CommitteeSize, m.Verifiers.ChallengeRate*100, len(m.Verifiers.Members))
	fmt.Fprintf(w, "cloves     n=%d k=%d, %d-hop paths\n", m.Clove.N, m.Clove.K, m.Clove.L)
	fmt.Fprintf(w, "bootstrap  %s\n", strings.Join(m.BootstrapPeers, " "))
	fmt.Fprintf(w, "mesh key   fingerprint %s\n", c.PSK.Fingerprint())
}

// commPrintPending describes manifest.pending.json, if any: what it
// changes and how many signatures it still needs.
func commPrintPending(w io.Writer, dir string, c *provisioning.Community) error {
	b, err := os.ReadFile(filepath.Join(dir, provisioning.PendingFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	sm, err := provisioning.DecodeSignedManifest(b)
	if err != nil {
		return fmt.Errorf("%s: %w", provisioning.PendingFile, err)
	}
	next, err := sm.Manifest()
	if err != nil {
		return fmt.Errorf("%s: %w", provisioning.PendingFile, err)
	}
	signers := 0
	for _, sg := range sm.Signatures {
		if c.Manifest.IsSteward(sg.Key) {
			signers++
		}
	}
	fmt.Fprintf(w, "\npending update to serial %d: %d of %d current steward signatures (needs %d; the new manifest needs %d of its own)\n",
		next.Serial, signers, len(c.Manifest.Stewards), c.Manifest.StewardThreshold, next.StewardThreshold)
	old := map[string]string{}
	for _, r := range c.Manifest.Rules() {
		old[r.Name] = r.Value
	}
	for _, r := range next.Rules() {
		if old[r.Name] != r.Value {
			fmt.Fprintf(w, "  %s: %s -> %s\n", r.Name, old[r.Name], r.Value)
		}
	}
	for _, s := range next.Stewards {
		if !c.Manifest.IsSteward(s.PublicKey) {
			fmt.Fprintf(w, "  + steward %s %s\n", s.Name, s.PublicKey)
		}
	}
	for _, s := range c.Manifest.Stewards {
		if !next.IsSteward(s.PublicKey) {
			fmt.Fprintf(w, "  - steward %s %s\n", s.Name, s.PublicKey)
		}
	}
	if a, b := strings.Join(c.Manifest.BootstrapPeers, " "), strings.Join(next.BootstrapPeers, " "); a != b {
		fmt.Fprintf(w, "  bootstrap: %s -> %s\n", a, b)
	}
	if a, b := strings.Join(c.Manifest.Verifiers.Members, " "), strings.Join(next.Verifiers.Members, " "); a != b {
		fmt.Fprintf(w, "  verifiers: %s -> %s\n", a, b)
	}
	return nil
}

func commParseLocation(s string) (provisioning.Location, error) {
	a, b, ok := strings.Cut(s, ",")
	lat, err1 := strconv.ParseFloat(strings.TrimSpace(a), 64)
	lon, err2 := strconv.ParseFloat(strings.TrimSpace(b), 64)
	if !ok || err1 != nil || err2 != nil {
		return provisioning.Location{}, fmt.Errorf("-location %q: want LAT,LON in degrees", s)
	}
	return provisioning.Location{Lat: lat, Lon: lon}, nil
}

func commSplitList(s string) []string {
	if s == "" || s == "-" {
		return nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// commReadPassword takes the steward password from a file, the environment, or
// an interactive prompt (twice, echo off) when stdin is a terminal.
func commReadPassword(file string, stdin io.Reader) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("password: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	}
	if pw := os.Getenv("HYPHA_STEWARD_PASSWORD"); pw != "" {
		return pw, nil
	}
	f, ok := stdin.(*os.File)
	if !ok || !fileIsTerminal(f) {
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("password: %w", err)
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	first, err := commPromptNoEcho(f, "steward password for the LAN page: ")
	if err != nil {
		return "", err
	}
	second, err := commPromptNoEcho(f, "again: ")
	if err != nil {
		return "", err
	}
	if first != second {
		return "", fmt.Errorf("password: the two entries differ")
	}
	return first, nil
}

func fileIsTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func commPromptNoEcho(f *os.File, prompt string) (string, error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return "", fmt.Errorf("password prompt: %w", err)
	}
	quiet := *old
	quiet.Lflag &^= unix.ECHO
	quiet.Lflag |= unix.ICANON
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &quiet); err != nil {
		return "", fmt.Errorf("password prompt: %w", err)
	}
	defer unix.IoctlSetTermios(fd, unix.TCSETS, old)
	fmt.Fprint(os.Stderr, prompt)
	line, err := bufio.NewReader(f).ReadString('\n')
	fmt.Fprintln(os.Stderr)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("password prompt: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}
