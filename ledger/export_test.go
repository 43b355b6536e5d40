package ledger

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// exportFixture: a service payment with observations and a fee, a plain
// transfer, and a correction.
func exportFixture(t *testing.T) (*Node, []*Tx) {
	clk := newClock()
	rules := testRules()
	rules.Commons = MemberOfKey(newKey(t))
	rules.FeeBasisPoints = 100
	server, client := newNode(t, rules, clk, WithBioregion("danube-delta")), newNode(t, rules, clk, WithPolicy(allowAll))
	svc, err := transfer(server, client, Terms{Payer: client.ID(), Payee: server.ID(), Purpose: PurposeInference,
		Observations: []Observation{
			{Property: PropSolarPower, Value: 250, Unit: "W", Time: clk.Now(), SensorID: "ina219-0x40"},
			{Property: "air_temperature", Value: 23.72, Unit: "Cel", Time: clk.Now(), SensorID: "bme280/0x76"},
			{Property: "soil_moisture", Value: 31.5, Unit: "%", Time: clk.Now(), SensorID: "sim-1", Simulated: true},
			{Property: PropLoadPower, Value: 100, Unit: "W", Time: clk.Now(), SensorID: "rapl"},
		},
		Receipt: &Receipt{ModelHash: "sha256:9f86d0", TokensIn: 812, TokensOut: 256, MilliJoules: 1_250_000}})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Hour)
	plain := mustTransfer(t, client, server, 1500)
	clk.Advance(time.Hour)
	fix, err := transfer(server, client, Terms{Payer: server.ID(), Payee: client.ID(), Amount: 1500, Purpose: PurposeCorrection, Corrects: plain.ID()})
	if err != nil {
		t.Fatal(err)
	}
	return server, []*Tx{svc, plain, fix}
}

func TestValueFlowsJSONLDShape(t *testing.T) {
	n, txs := exportFixture(t)
	var buf bytes.Buffer
	if err := n.Export(&buf, "jsonld", time.Time{}, time.Now().Add(100*365*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Context map[string]any   `json:"@context"`
		Graph   []map[string]any `json:"@graph"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Context["vf"] != ValueFlowsNS {
		t.Errorf("vf prefix %v", doc.Context["vf"])
	}
	byID := map[string]map[string]any{}
	for _, node := range doc.Graph {
		byID[node["@id"].(string)] = node
	}
	svc := byID[TxIRI(txs[0].ID())+"#service"]
	if svc == nil || svc["action"] != "vf:deliverService" || svc["provider"] != MemberIRI(txs[0].Body.Payee) {
		t.Fatalf("service event: %v", svc)
	}
	pay := byID[TxIRI(txs[0].ID())+"#transfer"]
	if pay == nil || pay["action"] != "vf:transfer" || pay["reciprocalRealizationOf"] != TxIRI(txs[0].ID()) {
		t.Fatalf("payment event: %v", pay)
	}
	if q := pay["resourceQuantity"].(map[string]any); q["hasNumericalValue"] != FormatMilli(txs[0].Body.Amount) {
		t.Errorf("payment quantity %v, want %s", q, FormatMilli(txs[0].Body.Amount))
	}
	if obs := pay["observation"].([]any); len(obs) != 4 || byID[obs[1].(string)]["@type"] != "Observation" {
		t.Errorf("observations linked: %v", obs)
	}
	if byID[TxIRI(txs[0].ID())+"#fee"] == nil {
		t.Error("no fee event")
	}
	corr := byID[TxIRI(txs[2].ID())+"#transfer"]
	if corr["corrects"] != TxIRI(txs[1].ID())+"#transfer" {
		t.Errorf("correction: %v", corr["corrects"])
	}
}

func TestFormatMilli(t *testing.T) {
	for in, want := range map[int64]string{0: "0", 1: "0.001", 1500: "1.5", -1234: "-1.234", 1000: "1", -5: "-0.005"} {
		if got := FormatMilli(in); got != want {
			t.Errorf("FormatMilli(%d) = %q, want %q", in, got, want)
		}
	}
}

// TestValueFlowsExpandsInJSONLDProcessor expands the export with jsonld.js
// in safe mode (which fails on any term it would drop) and checks the
// expanded IRIs.
func TestValueFlowsExpandsInJSONLDProcessor(t *testing.T) {
	modules, _ := filepath.Abs("../out/ledger-npm/node_modules")
	if _, err := os.Stat(filepath.Join(modules, "jsonld")); err != nil {
		t.Skip("jsonld.js not installed: run `make ledger-jsonld` (make test does)")
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed (make deps installs it)")
	}
	n, _ := exportFixture(t)
	dir := t.TempDir()
	doc := filepath.Join(dir, "export.jsonld")
	f, err := os.Create(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Export(f, "jsonld", time.Time{}, time.Now().Add(100*365*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	script := `
const jsonld = require('jsonld');
const doc = JSON.parse(require('fs').readFileSync(process.argv[1], 'utf8'));
jsonld.expand(doc, {safe: true}).then(out => {
  process.stdout.write(JSON.stringify(out));
}).catch(e => { console.error(e.name + ': ' + e.message + ' ' + JSON.stringify(e.details || {})); process.exit(1); });
`
	cmd := exec.Command(node, "-e", script, doc)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("jsonld.expand: %v\n%s", err, stderr.String())
	}
	var expanded []map[string]any
	if err := json.Unmarshal(out, &expanded); err != nil {
		t.Fatal(err)
	}
	vf := ValueFlowsNS
	var events, services, observations int
	for _, node := range expanded {
		types, _ := node["@type"].([]any)
		for _, ty := range types {
			switch ty {
			case vf + "EconomicEvent":
				events++
				act := node[vf+"action"].([]any)[0].(map[string]any)["@id"]
				if act == vf+"deliverService" {
					services++
				} else if act != vf+"transfer" {
					t.Errorf("action %v", act)
				}
				if node[vf+"provider"] == nil || node[vf+"receiver"] == nil {
					t.Errorf("event without provider/receiver: %v", node)
				}
			case "http://www.w3.org/ns/sosa/Observation":
				observations++
			}
		}
	}
	// 3 transactions: 3 transfers + 1 service + 3 fees... fees only where due.
	if services != 1 || observations != 4 || events < 5 {
		t.Errorf("expanded %d events (%d services), %d observations", events, services, observations)
	}
	if !strings.Contains(string(out), "http://www.ontology-of-units-of-measure.org/resource/om-2/degreeCelsius") {
		t.Error("Cel not mapped to om2:degreeCelsius")
	}
}

func TestCSVExport(t *testing.T) {
	n, txs := exportFixture(t)
	var buf bytes.Buffer
	if err := n.Export(&buf, "csv", time.Time{}, time.Now().Add(100*365*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 || strings.Join(rows[0], ",") != strings.Join(CSVHeader, ",") {
		t.Fatalf("rows %d, header %v", len(rows), rows[0])
	}
	r := rows[1]
	if r[0] != txs[0].ID().String() || r[10] != "deliverService" || r[11] != "danube-delta" || r[16] != "812" {
		t.Errorf("service row %v", r)
	}
	if !strings.Contains(r[19], "soil_moisture=31.5 %@sim-1~") {
		t.Errorf("observations column %q", r[19])
	}
	if rows[3][12] != txs[1].ID().String() {
		t.Errorf("correction row does not name the corrected tx: %v", rows[3])
	}
	if err := n.Export(&buf, "xml", time.Time{}, time.Now()); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestBioregionalAccounts(t *testing.T) {
	n, txs := exportFixture(t)
	totals, err := n.Bioregions(Day, time.Time{}, time.Now().Add(100*365*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(totals) != 2 {
		t.Fatalf("totals %+v, want two bioregions", totals)
	}
	// The client proposed the plain transfer without a bioregion; the
	// server proposed the others in danube-delta.
	var d BioregionTotal
	for _, x := range totals {
		if x.Bioregion == "danube-delta" {
			d = x
		}
	}
	if d.Transactions != 2 || d.Services != 1 || d.MilliJoules != 1_250_000 || d.TokensOut != 256 ||
		d.Volume != txs[0].Body.Amount+1500 || d.SolarSamples != 1 || d.MeanSolarW != 250 || d.SimulatedObs != 1 {
		t.Errorf("danube-delta: %+v", d)
	}
	// 250 W of sun for 100 W of load: all of the service's energy was solar.
	if d.SolarMilliJoules != d.MilliJoules {
		t.Errorf("solar energy %d of %d mJ", d.SolarMilliJoules, d.MilliJoules)
	}
	if !d.Period.Equal(Day.Start(txs[0].Body.Created)) {
		t.Errorf("period %v", d.Period)
	}
	if got := Week.Start(time.Date(2026, 6, 21, 12, 0, 0, 0, time.UTC)); !got.Equal(time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("week of Sunday 2026-06-21 starts %v", got)
	}
}

func TestViewAndGatewayChecks(t *testing.T) {
	clk := newClock()
	rules := testRules()
	a, b := newNode(t, rules, clk, WithBioregion("alps")), newNode(t, rules, clk)
	mustTransfer(t, a, b, 9000)
	if err := a.CanSpend(b.ID(), 1000); err != nil {
		t.Errorf("CanSpend within limits: %v", err)
	}
	err := a.CanSpend(b.ID(), 1001)
	if !errors.Is(err, ErrLimit) {
		t.Fatalf("CanSpend over the limit: %v, want ErrLimit", err)
	}
	t.Logf("refusal: %v", err)
	q, err := a.Quote(Receipt{TokensIn: 1000, TokensOut: 1000}, nil)
	if err != nil || q != 1100 {
		t.Errorf("Quote = %d, %v; want 1100", q, err)
	}
	v, err := a.View(10, Day, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Accounts) != 2 || len(v.Recent) != 1 || v.Recent[0].Action != "transfer" || len(v.Bioregions) != 1 || v.Bioregions[0].Bioregion != "alps" {
		t.Errorf("view %+v", v)
	}
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if v.SpentToday != 9000 || v.EarnedToday != 0 {
		t.Errorf("spent %d earned %d today, want 9000 and 0", v.SpentToday, v.EarnedToday)
	}
	if !bytes.Contains(raw, []byte(`"balance":-9000`)) {
		t.Errorf("JSON view lacks the balance: %s", raw)
	}
}
