package ledger_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/univrs/hypha/ledger"
)

// Two members trade over a stream, then a third node learns both chains by
// sync and verifies the balances itself.
func Example() {
	dir, _ := os.MkdirTemp("", "ledger-example-")
	defer os.RemoveAll(dir)
	rules := ledger.DefaultRules()
	open := func(name string, seed byte) *ledger.Node {
		key := ed25519.NewKeyFromSeed(append(make([]byte, 31), seed))
		n, err := ledger.Open(filepath.Join(dir, name+".db"), key, rules)
		if err != nil {
			panic(err)
		}
		return n
	}
	server, observer := open("server", 1), open("observer", 3)
	// The client's gateway approves the bills it expects.
	approvals := ledger.NewApprovals(nil)
	client, err := ledger.Open(filepath.Join(dir, "client.db"), ed25519.NewKeyFromSeed(append(make([]byte, 31), 2)), rules,
		ledger.WithPolicy(approvals.Policy))
	if err != nil {
		panic(err)
	}
	defer server.Close()
	defer client.Close()
	defer observer.Close()

	// The server served a request; it proposes the payment, priced by the
	// community's rule from the receipt and the sensor readings of the
	// moment: base 460 (tokens) + 45 (energy) milli-units, halved by the
	// 200 W solar surplus -> 253. The client's node countersigns within its
	// limits.
	cancel := approvals.Expect(server.ID(), 1000, time.Minute) // before forwarding the request
	defer cancel()
	var tx *ledger.Tx
	c1, c2 := net.Pipe()
	go client.ServeCountersign(context.Background(), c2)
	tx, err = server.Pay(context.Background(), c1, ledger.Terms{
		Payer: client.ID(), Payee: server.ID(), Purpose: ledger.PurposeInference,
		Observations: []ledger.Observation{{Property: ledger.PropSolarPower, Value: 320, Unit: "W", SensorID: "ina219"},
			{Property: ledger.PropLoadPower, Value: 120, Unit: "W", SensorID: "rapl"}},
		Receipt: &ledger.Receipt{ModelHash: "sha256:…", TokensIn: 600, TokensOut: 400, MilliJoules: 900_000},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("price:", ledger.FormatMilli(tx.Body.Amount), tx.Body.Unit)

	// Anyone can verify: sync the server's chains to an observer.
	s1, s2 := net.Pipe()
	go server.Sync(context.Background(), s2)
	if _, err := observer.Sync(context.Background(), s1); err != nil {
		panic(err)
	}
	b, _ := observer.Balance(client.ID())
	fmt.Println("client balance seen by the observer:", ledger.FormatMilli(b))
	fmt.Println("client chain verifies:", observer.VerifyChain(client.ID()) == nil)
	// Output:
	// price: 0.253 credit
	// client balance seen by the observer: -0.253
	// client chain verifies: true
}
