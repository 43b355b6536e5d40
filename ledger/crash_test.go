package ledger

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const crashEnv = "HYPHA_LEDGER_CRASH_DIR"

func crashKeys() (a, b ed25519.PrivateKey) {
	var sa, sb [32]byte
	sa[0], sb[0] = 0xa1, 0xb2
	return ed25519.NewKeyFromSeed(sa[:]), ed25519.NewKeyFromSeed(sb[:])
}

// TestCrashWriterChild is the writer process of TestCrashSafety: it opens
// two members' stores (fsync on), recovers an interrupted exchange by
// syncing them, then transfers credit back and forth as fast as it can,
// printing "ack <txid> <seq>" after each transaction is appended on both
// sides, until it is killed.
func TestCrashWriterChild(t *testing.T) {
	dir := os.Getenv(crashEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestCrashSafety")
	}
	ka, kb := crashKeys()
	rules := DefaultRules()
	rules.DefaultLimits = Limits{Min: -1 << 40, Max: 1 << 40}
	a, err := Open(filepath.Join(dir, "a.db"), ka, rules, WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(filepath.Join(dir, "b.db"), kb, rules, WithLogger(quietLogger()))
	if err != nil {
		t.Fatal(err)
	}
	p1, p2 := net.Pipe()
	go b.Sync(context.Background(), p2)
	if _, err := a.Sync(context.Background(), p1); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Node{a, b} {
		if p, _ := n.Pending(); p != nil {
			// Not countersigned before the crash: the other side would
			// have synced it, which clears the lock.
			n.CancelPending()
		}
	}
	out := bufio.NewWriter(os.Stdout)
	for i := 0; ; i++ {
		x, y := a, b
		if i%3 == 2 {
			x, y = b, a
		}
		tx, err := transfer(x, y, Terms{Payer: x.ID(), Payee: y.ID(), Amount: int64(1 + i%97), Purpose: "crash",
			Observations: []Observation{{Property: PropSolarPower, Value: float64(i), Unit: "W", Time: time.Now(), SensorID: "sim", Simulated: true}}})
		if err != nil {
			t.Fatal(err)
		}
		e, _ := tx.EntryFor(a.ID())
		fmt.Fprintf(out, "ack %s %d\n", tx.ID(), e.Seq)
		out.Flush()
	}
}

// TestCrashSafety kills the writer with SIGKILL at random points, over and
// over, and after every kill reopens both stores and checks them: they open,
// every acknowledged transaction is there, every chain verifies, balances
// are consistent and sum to zero, and no half entry exists.
func TestCrashSafety(t *testing.T) {
	if os.Getenv(crashEnv) != "" {
		t.Skip("child")
	}
	kills := 100
	if testing.Short() {
		kills = 20
	}
	// A SIGKILL loses the process, not the page cache, so tmpfs (fast)
	// exercises the same commit protocol as a disk; a disk is used where
	// there is no /dev/shm.
	dir := t.TempDir()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "ledger-crash-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		dir = d
	}
	ka, kb := crashKeys()
	acked := map[Hash]uint64{}
	var lastSeq uint64
	total := 0
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Now()
	base := dir
	for k := 0; k < kills; k++ {
		// Ten kills per pair of stores (each run recovers from the last
		// crash), then fresh stores, so the full check after each kill
		// stays cheap.
		if k%10 == 0 {
			dir = filepath.Join(base, fmt.Sprint(k))
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			acked, lastSeq = map[Hash]uint64{}, 0
		}
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashWriterChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Wait for the first ack (the child has recovered and is writing),
		// then kill it after a random delay.
		var first string
		select {
		case first = <-lines:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			t.Fatal("writer produced no ack in 60s")
		}
		time.Sleep(time.Duration(rng.IntN(40_000)) * time.Microsecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var other []string
		for _, l := range append([]string{first}, drain(lines)...) {
			if !strings.HasPrefix(l, "ack ") {
				other = append(other, l)
			}
			var id string
			var seq uint64
			if _, err := fmt.Sscanf(l, "ack %s %d", &id, &seq); err != nil {
				if strings.HasPrefix(l, "ack") {
					t.Fatalf("bad ack line %q", l)
				}
				continue
			}
			var h Hash
			if err := h.UnmarshalText([]byte(id)); err != nil {
				t.Fatal(err)
			}
			if _, dup := acked[h]; !dup {
				total++
			}
			acked[h] = seq
			lastSeq = max(lastSeq, seq)
		}
		err = cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
			t.Fatalf("writer ended with %v, not by SIGKILL (kill %d); its output:\n%s%s", err, k, stderr.String(), strings.Join(other, "\n"))
		}
		// Reopen and check both stores.
		rules := DefaultRules()
		for _, key := range []ed25519.PrivateKey{ka, kb} {
			n, err := Open(filepath.Join(dir, map[bool]string{true: "a.db", false: "b.db"}[key.Equal(ka)]), key, rules, WithLogger(quietLogger()))
			if err != nil {
				t.Fatalf("kill %d: reopen: %v", k, err)
			}
			if err := n.Check(); err != nil {
				t.Fatalf("kill %d: %v", k, err)
			}
			for _, m := range []MemberID{MemberOfKey(ka), MemberOfKey(kb)} {
				if err := n.VerifyChain(m); err != nil {
					t.Fatalf("kill %d: %v", k, err)
				}
			}
			for id := range acked {
				if _, err := n.Tx(id); err != nil {
					t.Fatalf("kill %d: acknowledged tx %s lost on %s: %v", k, id.String()[:8], n.ID().Short(), err)
				}
			}
			if h, _ := n.Head(MemberOfKey(ka)); key.Equal(ka) && h.Seq < lastSeq {
				t.Fatalf("kill %d: A's head at %d, acknowledged up to %d", k, h.Seq, lastSeq)
			}
			n.Close()
		}
	}
	t.Logf("%d kills in %v, %d acknowledged transactions", kills, time.Since(start).Round(time.Millisecond), total)
	if total < kills {
		t.Fatalf("only %d acknowledged transactions over %d runs", total, kills)
	}
}

func drain(c <-chan string) []string {
	var out []string
	for l := range c {
		out = append(out, l)
	}
	return out
}
