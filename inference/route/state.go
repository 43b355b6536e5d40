package route

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
)

// MaxStateBytes bounds a cache-state document read by DecodeCacheState
// (enough for 2 x DefaultMaxHashes hex hashes).
const MaxStateBytes = 4 << 20

// DecodeCacheState decodes inferd's GET /hypha/cache answer ({"model",
// "loaded", "version", "full", "added": [hex], "removed": [hex]}) read
// from r, refusing documents over maxBytes (<= 0: MaxStateBytes) or with
// more than maxHashes hashes (<= 0: DefaultMaxHashes) with ErrTooLarge.
// Untrusted input: every error names what was wrong.
func DecodeCacheState(r io.Reader, maxBytes int64, maxHashes int) (CacheState, error) {
	if maxBytes <= 0 {
		maxBytes = MaxStateBytes
	}
	if maxHashes <= 0 {
		maxHashes = DefaultMaxHashes
	}
	b, err := io.ReadAll(io.LimitReader(r, maxBytes+1))
	if err != nil {
		return CacheState{}, fmt.Errorf("route: cache state: %w", err)
	}
	if int64(len(b)) > maxBytes {
		return CacheState{}, fmt.Errorf("route: cache state: more than %d bytes: %w", maxBytes, ErrTooLarge)
	}
	var doc struct {
		Version *uint64  `json:"version"`
		Full    bool     `json:"full"`
		Added   []string `json:"added"`
		Removed []string `json:"removed"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return CacheState{}, fmt.Errorf("route: cache state: %w", err)
	}
	if doc.Version == nil {
		return CacheState{}, fmt.Errorf("route: cache state: no version field")
	}
	if len(doc.Added)+len(doc.Removed) > maxHashes {
		return CacheState{}, fmt.Errorf("route: cache state: %d hashes, bound %d: %w", len(doc.Added)+len(doc.Removed), maxHashes, ErrTooLarge)
	}
	st := CacheState{Version: *doc.Version, Full: doc.Full}
	parse := func(field string, in []string) ([]uint64, error) {
		out := make([]uint64, len(in))
		for i, s := range in {
			v, err := strconv.ParseUint(s, 16, 64)
			if err != nil || len(s) != 16 {
				return nil, fmt.Errorf("route: cache state: %s[%d] %q: not a 16-digit hex hash", field, i, s)
			}
			out[i] = v
		}
		return out, nil
	}
	if st.Added, err = parse("added", doc.Added); err != nil {
		return CacheState{}, err
	}
	if st.Removed, err = parse("removed", doc.Removed); err != nil {
		return CacheState{}, err
	}
	return st, nil
}
