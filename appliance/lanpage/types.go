package lanpage

import (
	"context"
	"time"
)

// This file holds the plain data the LAN page renders. The lead adapts each
// subsystem (mesh, inference, ledger, sensors, hwtest, provisioning) to these
// structs; the LAN page never imports a subsystem. Every struct is a value
// snapshot: the page never keeps or mutates what a source returns.

// Sources are the subsystems the LAN page shows. Each field is a function
// returning a snapshot. A nil function means "subsystem not running" and is
// shown as such; an error returned is shown as "unavailable: <error>" in that
// view only. Only Node is required.
//
// Source functions are called concurrently from many HTTP requests and SSE
// streams, each with a context bounded by the source timeout (WithSourceTimeout,
// default 2 s); they must be safe for concurrent use. A panic in a source is
// recovered and reported as an error.
type Sources struct {
	// Node describes this box. Required.
	Node func(context.Context) (NodeInfo, error)
	// Services lists the services of the node and their state (overview).
	Services func(context.Context) ([]Service, error)
	// Alerts lists what a steward should look at now (overview).
	Alerts func(context.Context) ([]Alert, error)
	// Mesh is the membership view of the mesh (mesh view, overview health).
	Mesh func(context.Context) (Mesh, error)
	// Inference is the routing and model state (inference view).
	Inference func(context.Context) (Inference, error)
	// Ledger is the credit state (ledger view, overview credit summary).
	Ledger func(context.Context) (Ledger, error)
	// Land returns sensor readings and, for a window with a non-zero span,
	// the chart series over it (land & energy view). The overview calls it
	// with the zero Window: return readings and Today only, series may be nil.
	Land func(context.Context, Window) (Land, error)
	// Hardware is the last hwtest report (hardware view).
	Hardware func(context.Context) (Hardware, error)
	// Community is the signed community manifest (community view).
	Community func(context.Context) (Community, error)
	// Actions are the steward actions; each needs the steward password.
	Actions Actions
}

// Actions are the callbacks behind the steward's forms. A nil callback is
// shown as "not available on this node". They are called only after the
// password, the session and the XSRF token were checked and the input was
// decoded and validated. The error text returned is shown to the steward.
type Actions struct {
	SetNodeConfig   func(context.Context, NodeConfigEdit) error
	AttachSensor    func(context.Context, SensorAttachment) error
	AcceptInvite    func(context.Context, InviteAcceptance) error
	ApproveReversal func(context.Context, ReversalApproval) error
}

// NodeInfo describes this box.
type NodeInfo struct {
	Name      string    `json:"name"`                // DNS label, e.g. "riverbend-1"
	PeerID    string    `json:"peerId"`              // libp2p peer ID (12D3KooW…)
	PublicKey string    `json:"publicKey,omitempty"` // ed25519 public key, hex or base64
	Version   string    `json:"version"`             // build version
	Started   time.Time `json:"started"`             // process start, for uptime
	Community string    `json:"community,omitempty"`
	Bioregion string    `json:"bioregion,omitempty"`
	Location  string    `json:"location,omitempty"` // free text or "lat,lon"
	Roles     []string  `json:"roles,omitempty"`    // e.g. "inference", "sensors", "relay"
	Addresses []string  `json:"addresses,omitempty"`
}

// ServiceState is the state of one service.
type ServiceState string

// Service states, shown with their own colour.
const (
	StateRunning  ServiceState = "running"
	StateStarting ServiceState = "starting"
	StateDegraded ServiceState = "degraded"
	StateStopped  ServiceState = "stopped"
	StateFailed   ServiceState = "failed"
	StateDisabled ServiceState = "disabled"
)

// Service is one service of the node (mesh, gateway, inferd, ledger, sensors…).
type Service struct {
	Name   string       `json:"name"`
	State  ServiceState `json:"state"`
	Detail string       `json:"detail,omitempty"`
	Since  time.Time    `json:"since,omitzero"`
}

// Severity of an alert.
type Severity string

// Alert severities.
const (
	SeverityInfo     Severity = "info"
	SeverityWarning  Severity = "warning"
	SeverityCritical Severity = "critical"
)

// Alert is something a steward should look at.
type Alert struct {
	Severity  Severity  `json:"severity"`
	Subsystem string    `json:"subsystem,omitempty"`
	Message   string    `json:"message"`
	Since     time.Time `json:"since,omitzero"`
}

// PeerState is the membership state of a peer.
type PeerState string

// Peer states.
const (
	PeerUp       PeerState = "up"
	PeerDegraded PeerState = "degraded" // reachable only via relay, or lossy
	PeerDown     PeerState = "down"
)

// Mesh is the membership view: who is up, how reachable, last seen, RTT.
type Mesh struct {
	Peers []Peer `json:"peers"`
	// Links between nodes (this node included, by its PeerID). Optional: if
	// nil, a link from this node to each peer that is not down is drawn.
	Links []Link `json:"links,omitempty"`
}

// Peer is another node of the community.
type Peer struct {
	ID           string        `json:"id"`
	Name         string        `json:"name"`
	State        PeerState     `json:"state"`
	Reachability string        `json:"reachability,omitempty"` // "direct", "relay", "unreachable"
	Addrs        []string      `json:"addrs,omitempty"`
	RTT          time.Duration `json:"rttNs,omitempty"`
	LastSeen     time.Time     `json:"lastSeen,omitzero"`
	Bioregion    string        `json:"bioregion,omitempty"`
	Roles        []string      `json:"roles,omitempty"`
	Load         float64       `json:"load"` // 0..1
}

// Link is a connection between two nodes, by peer ID.
type Link struct {
	From  string        `json:"from"`
	To    string        `json:"to"`
	State PeerState     `json:"state"`
	RTT   time.Duration `json:"rttNs,omitempty"`
	// TrafficBps is bytes per second over the link, both directions.
	TrafficBps float64 `json:"trafficBps"`
	// CreditRate is credit per hour flowing From→To (negative: To→From).
	CreditRate float64 `json:"creditRate"`
}

// Inference is the state of models and routing on the mesh.
type Inference struct {
	Models              []Model         `json:"models"`
	Nodes               []InferenceNode `json:"nodes"`
	Recent              []RouteDecision `json:"recent"`
	ReputationThreshold float64         `json:"reputationThreshold"`
	// Verification says how serving nodes are checked (committee size,
	// epoch, whether this node is a verifier); "" when no committee runs.
	Verification string `json:"verification,omitempty"`
	// ReputationSeries is each serving node's reputation after every
	// verified epoch (Unit "", Chart "Reputation").
	ReputationSeries []Series `json:"reputationSeries,omitempty"`
}

// Model is a model served somewhere on the mesh.
type Model struct {
	Name      string   `json:"name"`
	Hash      string   `json:"hash,omitempty"`
	SizeBytes int64    `json:"sizeBytes,omitempty"`
	Quant     string   `json:"quant,omitempty"`
	Nodes     []string `json:"nodes"` // names of nodes serving it
}

// InferenceNode is one node's serving state.
type InferenceNode struct {
	Name         string  `json:"name"`
	PeerID       string  `json:"peerId,omitempty"`
	Engine       string  `json:"engine,omitempty"` // "inferd", "llama-server", "ollama"…
	Healthy      bool    `json:"healthy"`
	Load         float64 `json:"load"` // 0..1
	Queue        int     `json:"queue"`
	CacheHitRate float64 `json:"cacheHitRate"` // 0..1
	Reputation   float64 `json:"reputation"`   // 0..1
	// Flag says why the committee stopped trusting the node ("" if it
	// does); VerifiedEpochs is how many epochs were scored.
	Flag            string  `json:"flag,omitempty"`
	VerifiedEpochs  int     `json:"verifiedEpochs"`
	TokensPerSecond float64 `json:"tokensPerSecond"`
}

// RouteDecision is where one recent request went and why.
type RouteDecision struct {
	Time         time.Time     `json:"time"`
	Model        string        `json:"model"`
	Node         string        `json:"node"`
	Reason       string        `json:"reason"` // "longest cached prefix (312 tokens)", "least loaded"…
	PrefixTokens int           `json:"prefixTokens"`
	PromptTokens int           `json:"promptTokens"`
	TTFT         time.Duration `json:"ttftNs"`
	OK           bool          `json:"ok"`
}

// Ledger is the mutual-credit state as this node sees it.
type Ledger struct {
	Unit        string            `json:"unit"` // e.g. "hour" or "credit"
	Summary     CreditSummary     `json:"summary"`
	Balances    []Balance         `json:"balances"`
	Flows       []Flow            `json:"flows"` // recent, newest first
	Bioregions  []BioregionTotal  `json:"bioregions"`
	Quarantined []Quarantine      `json:"quarantined"`
	Reversals   []ReversalRequest `json:"reversals"` // awaiting a steward
}

// CreditSummary is this node's own account.
type CreditSummary struct {
	Balance     float64 `json:"balance"`
	Min         float64 `json:"min"`
	Max         float64 `json:"max"`
	EarnedToday float64 `json:"earnedToday"`
	SpentToday  float64 `json:"spentToday"`
}

// Balance is one member's balance and limits.
type Balance struct {
	Member      string  `json:"member"` // member key or peer ID
	Name        string  `json:"name"`
	Balance     float64 `json:"balance"`
	Min         float64 `json:"min"`
	Max         float64 `json:"max"`
	Quarantined bool    `json:"quarantined"`
}

// Flow is one countersigned transaction with its sensor readings.
type Flow struct {
	ID           string        `json:"id"`
	Time         time.Time     `json:"time"`
	From         string        `json:"from"` // names
	To           string        `json:"to"`
	Amount       float64       `json:"amount"`
	Purpose      string        `json:"purpose"`
	Corrects     string        `json:"corrects,omitempty"` // ID of the reversed flow
	Observations []Observation `json:"observations,omitempty"`
	Receipt      *Receipt      `json:"receipt,omitempty"`
}

// Observation is a sensor reading attached to a flow.
type Observation struct {
	Property  string    `json:"property"` // "solar power", "battery", "soil moisture"…
	Value     float64   `json:"value"`
	Unit      string    `json:"unit"` // UCUM: "W", "%", "Cel"…
	Time      time.Time `json:"time,omitzero"`
	Sensor    string    `json:"sensor,omitempty"`
	Simulated bool      `json:"simulated"`
}

// Receipt is the inference receipt a flow pays for.
type Receipt struct {
	Model     string  `json:"model"`
	TokensIn  int     `json:"tokensIn"`
	TokensOut int     `json:"tokensOut"`
	Joules    float64 `json:"joules"`
}

// BioregionTotal is the credit and energy of one bioregion over a period.
type BioregionTotal struct {
	Bioregion    string  `json:"bioregion"`
	Period       string  `json:"period"` // "today", "2026-11"…
	Volume       float64 `json:"volume"` // credit moved
	Transactions int     `json:"transactions"`
	EnergyKWh    float64 `json:"energyKWh"`
	SolarShare   float64 `json:"solarShare"` // 0..1 of the energy from the sun
}

// Quarantine is a member quarantined for a fork of its chain.
type Quarantine struct {
	Member string    `json:"member"`
	Name   string    `json:"name"`
	Reason string    `json:"reason"`
	Since  time.Time `json:"since"`
	Proof  string    `json:"proof,omitempty"` // short hash of the fork proof
}

// ReversalRequest is a correction waiting for a steward's approval.
type ReversalRequest struct {
	ID          string    `json:"id"`
	FlowID      string    `json:"flowId"`
	RequestedBy string    `json:"requestedBy"`
	Reason      string    `json:"reason"`
	Amount      float64   `json:"amount"`
	Time        time.Time `json:"time"`
}

// Window is a chart window of the land & energy view.
type Window struct {
	Name string        `json:"name"` // "hours", "days", "months", or "" for readings only
	From time.Time     `json:"from,omitzero"`
	To   time.Time     `json:"to,omitzero"`
	Step time.Duration `json:"stepNs,omitempty"` // suggested spacing of points
}

// Land is what the sensors and energy meters say.
type Land struct {
	Today    EnergyToday `json:"today"`
	Readings []Reading   `json:"readings"`
	Series   []Series    `json:"series,omitempty"`
	Buses    []Bus       `json:"buses,omitempty"`
}

// EnergyToday sums today's energy. Simulated marks figures from simulated meters.
type EnergyToday struct {
	SolarWh        float64 `json:"solarWh"`
	ConsumedWh     float64 `json:"consumedWh"`
	BatteryPercent float64 `json:"batteryPercent"` // negative: no battery
	Simulated      bool    `json:"simulated"`
}

// Reading is the latest value of one sensor.
type Reading struct {
	Sensor    string    `json:"sensor"` // driver and address, e.g. "bme280@0x76"
	Label     string    `json:"label"`
	Property  string    `json:"property"`
	Location  string    `json:"location,omitempty"`
	Value     float64   `json:"value"`
	Unit      string    `json:"unit"`
	Time      time.Time `json:"time,omitzero"`
	Simulated bool      `json:"simulated"`
	Error     string    `json:"error,omitempty"` // sensor stopped answering…
}

// Series is one chart line: points of (time, value) with a unit.
type Series struct {
	Name string `json:"name"`
	// Chart groups series into one chart: series with the same Chart share
	// it. Empty: series are grouped by Unit.
	Chart     string  `json:"chart,omitempty"`
	Unit      string  `json:"unit"`
	Simulated bool    `json:"simulated"`
	Points    []Point `json:"points"`
}

// Point is one (time, value) sample.
type Point struct {
	T time.Time `json:"t"`
	V float64   `json:"v"`
}

// Bus is an I²C / 1-wire bus and its state ("no buses" is shown when empty).
type Bus struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail,omitempty"`
}

// Hardware is the hwtest qualification report.
type Hardware struct {
	Generated time.Time         `json:"generated"`
	Machine   string            `json:"machine"`
	Verdict   string            `json:"verdict"` // "qualified", "limited", "unsuitable"
	Summary   string            `json:"summary,omitempty"`
	Sections  []HardwareSection `json:"sections"`
}

// HardwareSection groups probes (CPU, memory, disk, network, GPU, buses).
type HardwareSection struct {
	Name  string         `json:"name"`
	Items []HardwareItem `json:"items"`
}

// HardwareItem is one probe result. Status is "ok", "warn", "fail" or "info".
type HardwareItem struct {
	Name   string `json:"name"`
	Value  string `json:"value"`
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// Community is the signed community manifest.
type Community struct {
	Name        string    `json:"name"`
	ID          string    `json:"id,omitempty"`
	Bioregion   string    `json:"bioregion,omitempty"`
	Description string    `json:"description,omitempty"`
	Version     int       `json:"version"`
	Signed      time.Time `json:"signed,omitzero"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	Stewards    []Steward `json:"stewards"`
	Members     []Member  `json:"members"`
	Rules       []Rule    `json:"rules"`
	Invites     []Invite  `json:"invites,omitempty"` // pending
}

// Steward is a person who signs the manifest.
type Steward struct {
	Name    string `json:"name"`
	Key     string `json:"key,omitempty"`
	Contact string `json:"contact,omitempty"`
}

// Member is a node or person in the community.
type Member struct {
	Name   string    `json:"name"`
	ID     string    `json:"id,omitempty"`
	Joined time.Time `json:"joined,omitzero"`
}

// Rule is one community rule (credit limit, pricing, demurrage…).
type Rule struct {
	Name        string `json:"name"`
	Value       string `json:"value"`
	Description string `json:"description,omitempty"`
}

// Invite is a pending invitation.
type Invite struct {
	ID      string    `json:"id"`
	For     string    `json:"for"`
	Expires time.Time `json:"expires,omitzero"`
}
