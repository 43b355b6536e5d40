package ledger

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// ValueFlowsNS is the ValueFlows 1.0 namespace.
const ValueFlowsNS = "https://w3id.org/valueflows/ont/vf#"

// HyphaNS is the namespace of Hypha's own terms in exports.
const HyphaNS = "https://univrs.io/ns/hypha#"

// valueFlowsContext defines every term the export uses, so a JSON-LD
// processor in safe mode expands it without dropping anything.
var valueFlowsContext = map[string]any{
	"vf":    ValueFlowsNS,
	"om2":   "http://www.ontology-of-units-of-measure.org/resource/om-2/",
	"sosa":  "http://www.w3.org/ns/sosa/",
	"xsd":   "http://www.w3.org/2001/XMLSchema#",
	"hypha": HyphaNS,

	"EconomicEvent": "vf:EconomicEvent",
	"Agreement":     "vf:Agreement",
	"Measure":       "om2:Measure",
	"Observation":   "sosa:Observation",

	"action":                  map[string]any{"@id": "vf:action", "@type": "@id"},
	"provider":                map[string]any{"@id": "vf:provider", "@type": "@id"},
	"receiver":                map[string]any{"@id": "vf:receiver", "@type": "@id"},
	"resourceQuantity":        "vf:resourceQuantity",
	"effortQuantity":          "vf:effortQuantity",
	"resourceConformsTo":      map[string]any{"@id": "vf:resourceConformsTo", "@type": "@id"},
	"hasPointInTime":          map[string]any{"@id": "vf:hasPointInTime", "@type": "xsd:dateTime"},
	"realizationOf":           map[string]any{"@id": "vf:realizationOf", "@type": "@id"},
	"reciprocalRealizationOf": map[string]any{"@id": "vf:reciprocalRealizationOf", "@type": "@id"},
	"corrects":                map[string]any{"@id": "vf:corrects", "@type": "@id"},
	"note":                    "vf:note",
	"name":                    "vf:name",
	"hasNumericalValue":       map[string]any{"@id": "om2:hasNumericalValue", "@type": "xsd:decimal"},
	"hasUnit":                 map[string]any{"@id": "om2:hasUnit", "@type": "@id"},

	"observedProperty": map[string]any{"@id": "sosa:observedProperty", "@type": "@id"},
	"madeBySensor":     map[string]any{"@id": "sosa:madeBySensor", "@type": "@id"},
	"hasResult":        "sosa:hasResult",
	"phenomenonTime":   map[string]any{"@id": "sosa:phenomenonTime", "@type": "xsd:dateTime"},

	"observation": map[string]any{"@id": "hypha:observation", "@type": "@id"},
	"simulated":   map[string]any{"@id": "hypha:simulated", "@type": "xsd:boolean"},
	"ucumCode":    "hypha:ucumCode",
	"bioregion":   "hypha:bioregion",
	"transaction": "hypha:transaction",
	"modelHash":   "hypha:modelHash",
	"tokensIn":    map[string]any{"@id": "hypha:tokensIn", "@type": "xsd:integer"},
	"tokensOut":   map[string]any{"@id": "hypha:tokensOut", "@type": "xsd:integer"},
	"energy":      "hypha:energy",
	"payerSeq":    map[string]any{"@id": "hypha:payerSeq", "@type": "xsd:integer"},
	"payeeSeq":    map[string]any{"@id": "hypha:payeeSeq", "@type": "xsd:integer"},
}

// ucumToOM maps common UCUM codes of sensor readings to OM 2 units.
var ucumToOM = map[string]string{
	"Cel": "om2:degreeCelsius", "K": "om2:kelvin", "%": "om2:percent", "W": "om2:watt", "kW": "om2:kilowatt",
	"mW": "om2:milliwatt", "V": "om2:volt", "A": "om2:ampere", "J": "om2:joule", "kJ": "om2:kilojoule",
	"kW.h": "om2:kilowattHour", "W.h": "om2:wattHour", "hPa": "om2:hectopascal", "Pa": "om2:pascal",
	"kPa": "om2:kilopascal", "lx": "om2:lux", "[ppm]": "om2:partsPerMillion", "m/s": "om2:metrePerSecond-Time",
}

func unitIRI(ucum string) string {
	if u, ok := ucumToOM[ucum]; ok {
		return u
	}
	return "hypha:ucum/" + urlSafe(ucum)
}

func urlSafe(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x80 && (r == '-' || r == '.' || r == '_' || r == '~' || ('0' <= r && r <= '9') || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z')) {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, "%%%02X", string(r))
		}
	}
	return b.String()
}

// MemberIRI is the IRI of a member in exports.
func MemberIRI(m MemberID) string { return "urn:hypha:member:" + m.String() }

// TxIRI is the IRI of a transaction (the vf:Agreement both events realise).
func TxIRI(id Hash) string { return "urn:hypha:tx:" + id.String() }

// FormatMilli formats milli-units as an exact decimal ("-12.345").
func FormatMilli(v int64) string {
	sign := ""
	u := uint64(v)
	if v < 0 {
		sign, u = "-", uint64(-v)
	}
	s := fmt.Sprintf("%s%d.%03d", sign, u/1000, u%1000)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// valueFlowsGraph returns the JSON-LD nodes of one transaction: the
// agreement, a transfer event of credit from payer to payee (its
// reciprocal), a deliverService event from payee to payer when the
// transaction pays for inference, a fee transfer to the commons, and the
// attached SOSA observations, linked from the events.
func valueFlowsGraph(t *Tx) []map[string]any {
	b := &t.Body
	id := t.ID()
	base := TxIRI(id)
	var obsIDs []string
	var nodes []map[string]any
	for i, o := range b.Observations {
		oid := fmt.Sprintf("%s#obs-%d", base, i)
		obsIDs = append(obsIDs, oid)
		sensor := "urn:hypha:sensor:" + urlSafe(o.SensorID)
		nodes = append(nodes, map[string]any{
			"@id": oid, "@type": "Observation",
			"observedProperty": "hypha:property/" + urlSafe(o.Property),
			"madeBySensor":     sensor,
			"phenomenonTime":   isoTime(o.Time),
			"simulated":        o.Simulated,
			"hasResult": map[string]any{
				"@type":             "Measure",
				"hasNumericalValue": strconv.FormatFloat(o.Value, 'f', -1, 64),
				"hasUnit":           unitIRI(o.Unit),
				"ucumCode":          o.Unit,
			},
		})
	}
	unit := "hypha:unit/" + urlSafe(b.Unit)
	agreement := map[string]any{
		"@id": base, "@type": "Agreement", "name": b.Purpose,
		"transaction": id.String(), "bioregion": b.Bioregion,
		"payerSeq": b.PayerPos.Seq, "payeeSeq": b.PayeePos.Seq,
	}
	nodes = append(nodes, agreement)
	transfer := map[string]any{
		"@id": base + "#transfer", "@type": "EconomicEvent",
		"action":             "vf:transfer",
		"provider":           MemberIRI(b.Payer),
		"receiver":           MemberIRI(b.Payee),
		"resourceConformsTo": unit,
		"resourceQuantity":   map[string]any{"@type": "Measure", "hasNumericalValue": FormatMilli(b.Amount), "hasUnit": unit},
		"hasPointInTime":     isoTime(b.Created),
		"note":               b.Purpose,
		"bioregion":          b.Bioregion,
	}
	if len(obsIDs) > 0 {
		transfer["observation"] = obsIDs
	}
	if !b.Corrects.IsZero() {
		transfer["corrects"] = TxIRI(b.Corrects) + "#transfer"
	}
	if r := b.Receipt; r != nil {
		transfer["reciprocalRealizationOf"] = base
		svc := map[string]any{
			"@id": base + "#service", "@type": "EconomicEvent",
			"action":             "vf:deliverService",
			"provider":           MemberIRI(b.Payee),
			"receiver":           MemberIRI(b.Payer),
			"resourceConformsTo": "hypha:InferenceService",
			"resourceQuantity":   map[string]any{"@type": "Measure", "hasNumericalValue": strconv.FormatUint(r.TokensOut, 10), "hasUnit": "hypha:unit/token"},
			"realizationOf":      base,
			"hasPointInTime":     isoTime(b.Created),
			"modelHash":          r.ModelHash,
			"tokensIn":           r.TokensIn,
			"tokensOut":          r.TokensOut,
			"energy":             map[string]any{"@type": "Measure", "hasNumericalValue": FormatMilli(int64(min(r.MilliJoules, maxAmount))), "hasUnit": "om2:joule"},
			"bioregion":          b.Bioregion,
		}
		if len(obsIDs) > 0 {
			svc["observation"] = obsIDs
		}
		if !b.Corrects.IsZero() {
			svc["corrects"] = TxIRI(b.Corrects) + "#service"
		}
		nodes = append(nodes, svc)
	} else {
		transfer["realizationOf"] = base
	}
	nodes = append(nodes, transfer)
	if b.Fee > 0 {
		nodes = append(nodes, map[string]any{
			"@id": base + "#fee", "@type": "EconomicEvent",
			"action":             "vf:transfer",
			"provider":           MemberIRI(b.Payer),
			"receiver":           MemberIRI(b.Commons),
			"resourceConformsTo": unit,
			"resourceQuantity":   map[string]any{"@type": "Measure", "hasNumericalValue": FormatMilli(b.Fee), "hasUnit": unit},
			"realizationOf":      base,
			"hasPointInTime":     isoTime(b.Created),
			"note":               "fee to the commons",
		})
	}
	return nodes
}

// WriteValueFlows writes txs as one ValueFlows 1.0 JSON-LD document
// ({"@context": …, "@graph": […]}).
func WriteValueFlows(w io.Writer, txs []*Tx) error {
	graph := []map[string]any{}
	for _, t := range txs {
		graph = append(graph, valueFlowsGraph(t)...)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", " ")
	if err := enc.Encode(map[string]any{"@context": valueFlowsContext, "@graph": graph}); err != nil {
		return fmt.Errorf("write valueflows: %w", err)
	}
	return nil
}

// CSVHeader is the header row of WriteCSV.
var CSVHeader = []string{"tx_id", "created", "payer", "payee", "amount", "amount_milli", "fee_milli", "commons",
	"unit", "purpose", "action", "bioregion", "corrects", "payer_seq", "payee_seq",
	"model_hash", "tokens_in", "tokens_out", "millijoules", "observations"}

// WriteCSV writes txs as CSV with CSVHeader. Observations are
// "property=value unit@sensor" joined by "; " (with "~" after simulated ones).
func WriteCSV(w io.Writer, txs []*Tx) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	for _, t := range txs {
		b := &t.Body
		corr := ""
		if !b.Corrects.IsZero() {
			corr = b.Corrects.String()
		}
		commons := ""
		if b.Fee > 0 {
			commons = b.Commons.String()
		}
		var obs []string
		for _, o := range b.Observations {
			s := fmt.Sprintf("%s=%s %s@%s", o.Property, strconv.FormatFloat(o.Value, 'f', -1, 64), o.Unit, o.SensorID)
			if o.Simulated {
				s += "~"
			}
			obs = append(obs, s)
		}
		var mh, tin, tout, mj string
		if r := b.Receipt; r != nil {
			mh, tin, tout, mj = r.ModelHash, strconv.FormatUint(r.TokensIn, 10), strconv.FormatUint(r.TokensOut, 10), strconv.FormatUint(r.MilliJoules, 10)
		}
		rec := []string{t.ID().String(), isoTime(b.Created), b.Payer.String(), b.Payee.String(), FormatMilli(b.Amount),
			strconv.FormatInt(b.Amount, 10), strconv.FormatInt(b.Fee, 10), commons, b.Unit, b.Purpose, b.Action(), b.Bioregion, corr,
			strconv.FormatUint(b.PayerPos.Seq, 10), strconv.FormatUint(b.PayeePos.Seq, 10), mh, tin, tout, mj, strings.Join(obs, "; ")}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("write csv: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write csv: %w", err)
	}
	return nil
}

// Export writes the transactions created in [from, to) as ValueFlows
// JSON-LD (format "jsonld") or CSV (format "csv").
func (n *Node) Export(w io.Writer, format string, from, to time.Time) error {
	var txs []*Tx
	if err := n.Between(from, to, func(t *Tx) error { txs = append(txs, t); return nil }); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	switch format {
	case "jsonld", "json-ld", "valueflows":
		return WriteValueFlows(w, txs)
	case "csv":
		return WriteCSV(w, txs)
	}
	return fmt.Errorf("export: format %q (want jsonld or csv): %w", format, ErrInvalid)
}
