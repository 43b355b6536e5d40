package lanpage

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// PasswordHash is a parsed steward password hash: bcrypt ("$2a$…", "$2b$…",
// "$2y$…") or argon2id in PHC form ("$argon2id$v=19$m=65536,t=3,p=2$salt$hash",
// salt and hash in unpadded standard base64). Safe for concurrent use.
type PasswordHash struct {
	bcrypt []byte
	// argon2id parameters
	mem     uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// ParsePasswordHash parses a bcrypt or argon2id PHC hash.
func ParsePasswordHash(s string) (*PasswordHash, error) {
	switch {
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return nil, fmt.Errorf("%w: bcrypt: %v", ErrBadPasswordHash, err)
		}
		if len(s) != 60 {
			return nil, fmt.Errorf("%w: bcrypt hash is %d characters, want 60", ErrBadPasswordHash, len(s))
		}
		return &PasswordHash{bcrypt: []byte(s)}, nil
	case strings.HasPrefix(s, "$argon2id$"):
		return parseArgon2id(s)
	}
	return nil, fmt.Errorf("%w: want a bcrypt ($2b$…) or argon2id ($argon2id$…) hash", ErrBadPasswordHash)
}

func parseArgon2id(s string) (*PasswordHash, error) {
	parts := strings.Split(s, "$") // "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(parts) != 6 {
		return nil, fmt.Errorf("%w: argon2id: want 5 $-separated fields, got %d", ErrBadPasswordHash, len(parts)-1)
	}
	if parts[2] != "v=19" {
		return nil, fmt.Errorf("%w: argon2id: version %q, want v=19", ErrBadPasswordHash, parts[2])
	}
	h := &PasswordHash{}
	seen := 0
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%w: argon2id: parameter %q: %v", ErrBadPasswordHash, kv, err)
		}
		switch k {
		case "m":
			h.mem, seen = uint32(n), seen|1
		case "t":
			h.time, seen = uint32(n), seen|2
		case "p":
			if n > 255 {
				return nil, fmt.Errorf("%w: argon2id: p=%d above 255", ErrBadPasswordHash, n)
			}
			h.threads, seen = uint8(n), seen|4
		default:
			return nil, fmt.Errorf("%w: argon2id: unknown parameter %q", ErrBadPasswordHash, k)
		}
	}
	if seen != 7 {
		return nil, fmt.Errorf("%w: argon2id: need m, t and p", ErrBadPasswordHash)
	}
	// Bounds keep a hostile config from exhausting a Raspberry Pi at login.
	if h.mem < 8 || h.mem > 1<<20 || h.time < 1 || h.time > 16 || h.threads < 1 || h.threads > 16 {
		return nil, fmt.Errorf("%w: argon2id: m=%d t=%d p=%d out of range (m 8..1048576 KiB, t 1..16, p 1..16)", ErrBadPasswordHash, h.mem, h.time, h.threads)
	}
	var err error
	if h.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(h.salt) < 8 {
		return nil, fmt.Errorf("%w: argon2id: salt must be base64 of at least 8 bytes", ErrBadPasswordHash)
	}
	if h.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(h.key) < 16 || len(h.key) > 64 {
		return nil, fmt.Errorf("%w: argon2id: hash must be base64 of 16 to 64 bytes", ErrBadPasswordHash)
	}
	return h, nil
}

// Check reports whether password matches, in time independent of where it differs.
func (h *PasswordHash) Check(password string) bool {
	if h == nil || len(password) > 1024 {
		return false
	}
	if h.bcrypt != nil {
		if len(password) > 72 { // bcrypt ignores bytes past 72: refuse rather than truncate
			return false
		}
		return bcrypt.CompareHashAndPassword(h.bcrypt, []byte(password)) == nil
	}
	k := argon2.IDKey([]byte(password), h.salt, h.time, h.mem, h.threads, uint32(len(h.key)))
	return subtle.ConstantTimeCompare(k, h.key) == 1
}

// HashPassword returns an argon2id PHC hash of password with the OWASP
// minimum parameters (m=19 MiB, t=2, p=1),
// for provisioning to store as the steward password hash.
func HashPassword(password string) (string, error) {
	if len(password) < 8 {
		return "", fmt.Errorf("hash password: %w: shorter than 8 characters", ErrBadInput)
	}
	salt := make([]byte, 16)
	rand.Read(salt)
	const m, t, p = 19 << 10, 2, 1
	k := argon2.IDKey([]byte(password), salt, t, m, p, 32)
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", m, t, p,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(k)), nil
}

const (
	cookieVisitor = "hypha_v"       // random per browser; the XSRF token is bound to it
	cookieSession = "hypha_steward" // steward session
	maxSessions   = 64
)

// auth keeps steward sessions and login attempts. Safe for concurrent use.
type auth struct {
	hash   *PasswordHash // nil: steward actions disabled
	key    []byte        // HMAC key for XSRF tokens, random per process
	ttl    time.Duration
	now    func() time.Time
	secure bool

	mu       sync.Mutex
	sessions map[string]time.Time   // token -> expiry; guarded by mu
	fails    map[string][]time.Time // client IP -> recent failures; guarded by mu
	allFails []time.Time            // all recent failures; guarded by mu
	limit    int                    // failures per IP per window
	window   time.Duration
}

func newAuth(hash *PasswordHash, ttl time.Duration, limit int, window time.Duration, now func() time.Time, secure bool) *auth {
	key := make([]byte, 32)
	rand.Read(key)
	return &auth{hash: hash, key: key, ttl: ttl, now: now, secure: secure, limit: limit, window: window,
		sessions: map[string]time.Time{}, fails: map[string][]time.Time{}}
}

func randToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// visitor returns the visitor ID of r, setting a cookie for a new visitor.
func (a *auth) visitor(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(cookieVisitor); err == nil && len(c.Value) == 43 {
		return c.Value
	}
	v := randToken()
	http.SetCookie(w, &http.Cookie{Name: cookieVisitor, Value: v, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: a.secure, MaxAge: 400 * 24 * 3600})
	// Let the rest of this request see it.
	r.AddCookie(&http.Cookie{Name: cookieVisitor, Value: v})
	return v
}

// xsrfToken is the token forms of this visitor must carry.
func (a *auth) xsrfToken(visitor string) string {
	m := hmac.New(sha256.New, a.key)
	m.Write([]byte("xsrf\x00" + visitor))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// checkXSRF verifies the token of a POST against the visitor cookie and, when
// the browser sent one, the Origin header against the Host.
func (a *auth) checkXSRF(r *http.Request, formToken string) bool {
	c, err := r.Cookie(cookieVisitor)
	if err != nil || len(c.Value) != 43 {
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		host := strings.TrimPrefix(strings.TrimPrefix(o, "http://"), "https://")
		if host != r.Host {
			return false
		}
	}
	tok := r.Header.Get("X-XSRF-Token")
	if tok == "" {
		tok = formToken
	}
	want := a.xsrfToken(c.Value)
	return len(tok) == len(want) && subtle.ConstantTimeCompare([]byte(tok), []byte(want)) == 1
}

// steward reports whether r carries a live steward session.
func (a *auth) steward(r *http.Request) bool {
	c, err := r.Cookie(cookieSession)
	if err != nil {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	exp, ok := a.sessions[c.Value]
	if ok && a.now().After(exp) {
		delete(a.sessions, c.Value)
		return false
	}
	return ok
}

func clientIP(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

// allowLogin reports whether ip may try a password now, and if not, when.
func (a *auth) allowLogin(ip string) (bool, time.Duration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	prune := func(ts []time.Time) []time.Time {
		i := 0
		for i < len(ts) && now.Sub(ts[i]) > a.window {
			i++
		}
		return ts[i:]
	}
	a.fails[ip] = prune(a.fails[ip])
	if len(a.fails[ip]) == 0 {
		delete(a.fails, ip)
	}
	a.allFails = prune(a.allFails)
	if n := len(a.fails[ip]); n >= a.limit {
		return false, a.window - now.Sub(a.fails[ip][0])
	}
	if len(a.allFails) >= 6*a.limit { // many IPs guessing together
		return false, a.window - now.Sub(a.allFails[0])
	}
	return true, 0
}

// login checks password; on success it returns a new session token.
func (a *auth) login(ip, password string) (string, bool) {
	if a.hash == nil || !a.hash.Check(password) {
		a.mu.Lock()
		now := a.now()
		a.fails[ip] = append(a.fails[ip], now)
		a.allFails = append(a.allFails, now)
		a.mu.Unlock()
		return "", false
	}
	tok := randToken()
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	for t, exp := range a.sessions {
		if now.After(exp) {
			delete(a.sessions, t)
		}
	}
	if len(a.sessions) >= maxSessions { // drop the session closest to expiry
		var oldest string
		for t, exp := range a.sessions {
			if oldest == "" || exp.Before(a.sessions[oldest]) {
				oldest = t
			}
		}
		delete(a.sessions, oldest)
	}
	a.sessions[tok] = now.Add(a.ttl)
	delete(a.fails, ip)
	return tok, true
}

func (a *auth) logout(r *http.Request) {
	if c, err := r.Cookie(cookieSession); err == nil {
		a.mu.Lock()
		delete(a.sessions, c.Value)
		a.mu.Unlock()
	}
}

func (a *auth) sessionCookie(tok string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: cookieSession, Value: tok, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: a.secure, MaxAge: maxAge}
}
