package appliance

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"

	"github.com/univrs/hypha/inference/verify"
)

// TestVerificationReportsSurviveAReboot: the book is written to /perm and
// read back (every report checked again) after a reboot; a corrupted
// file keeps what was whole before the damage and says what is wrong.
func TestVerificationReportsSurviveAReboot(t *testing.T) {
	dir := t.TempDir()
	var committee []string
	var keys []crypto.PrivKey
	for i := range 3 {
		id, _, err := LoadOrCreateIdentity(filepath.Join(dir, "id", string(rune('a'+i))+".pem"))
		if err != nil {
			t.Fatal(err)
		}
		k, err := crypto.UnmarshalEd25519PrivateKey(id.Private)
		if err != nil {
			t.Fatal(err)
		}
		committee, keys = append(committee, id.ID()), append(keys, k)
	}
	const community = "00112233445566778899aabbccddeeff"
	p := verify.DefaultParams()
	now := p.EpochOf(time.Now())
	n := &Node{log: slog.New(slog.DiscardHandler)}
	path := filepath.Join(dir, "perm", "hypha", reportsFile)
	v := &verification{book: verify.NewBook(p, community, committee), path: path}
	for e := now - 3; e < now; e++ {
		for i, k := range keys {
			for _, d := range []int{1, 2} { // each member judges the other two
				r := &verify.Report{Community: community, Epoch: e, Node: committee[(i+d)%3], Model: "m",
					Credit: 0.9, Challenges: 2, Perplexity: 7, Time: time.Now().UnixMilli()}
				if err := r.Sign(k); err != nil {
					t.Fatal(err)
				}
				if _, err := v.book.Add(r); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	v.save(n)
	again := &verification{book: verify.NewBook(p, community, committee), path: path}
	if err := again.load(); err != nil {
		t.Fatal(err)
	}
	if got, want := len(again.book.Since(0)), len(v.book.Since(0)); got != want || want != 18 {
		t.Fatalf("after a reboot the book holds %d reports, want %d (18)", got, want)
	}
	if h := again.book.History(committee[1], now-1); len(h.Points) != 3 {
		t.Fatalf("history after reload: %+v", h)
	}
	// A torn write (appended garbage): the whole reports still count, the
	// damage is named.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("[{\"v\":1,\"commun")
	f.Close()
	torn := &verification{book: verify.NewBook(p, community, committee), path: path}
	if err := torn.load(); err == nil {
		t.Fatal("a torn reports file loads without a word")
	}
	if got := len(torn.book.Since(0)); got != 18 {
		t.Fatalf("after a torn write the book holds %d reports, want the 18 that were whole", got)
	}
}
