package lanpage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// NodeConfigEdit is the steward's edit of the node config.
type NodeConfigEdit struct {
	Name      string `json:"name"`      // DNS label: the box answers <name>.local
	Bioregion string `json:"bioregion"` // free text, may be empty
	Location  string `json:"location"`  // "" or "lat,lon" in decimal degrees
}

// SensorAttachment asks to attach a sensor to this node.
type SensorAttachment struct {
	Driver   string `json:"driver"`  // one of SensorDrivers
	Bus      string `json:"bus"`     // "/dev/i2c-1", "i2c-1", "1", "w1"
	Address  uint16 `json:"address"` // I²C address (0 for 1-wire / simulated)
	Label    string `json:"label"`
	Measures string `json:"measures"` // "air", "soil", "solar", "battery"…
	Location string `json:"location"`
}

// InviteAcceptance accepts an invite to a community.
type InviteAcceptance struct {
	Code string `json:"code"`
}

// ReversalApproval approves a pending reversal.
type ReversalApproval struct {
	ID     string `json:"id"` // ReversalRequest.ID
	Reason string `json:"reason"`
}

// ChatRequest is what the chat box posts.
type ChatRequest struct {
	Model    string        `json:"model"`
	Messages []ChatMessage `json:"messages"`
}

// ChatMessage is one turn of a chat.
type ChatMessage struct {
	Role    string `json:"role"` // "user", "assistant", "system"
	Content string `json:"content"`
}

// SensorDrivers are the drivers a steward can attach.
var SensorDrivers = []string{"bme280", "bmp280", "ds18b20", "ina219", "ads1x15", "scd4x", "bh1750", "simulated"}

// Input limits.
const (
	maxBody       = 64 << 10
	maxText       = 200
	maxInvite     = 4096
	maxChatTurns  = 64
	maxChatLength = 16 << 10
)

// ParseNodeConfigEdit decodes and validates a node config edit from a form.
func ParseNodeConfigEdit(v url.Values) (NodeConfigEdit, error) {
	e := NodeConfigEdit{Name: v.Get("name"), Bioregion: v.Get("bioregion"), Location: v.Get("location")}
	return e, e.validate()
}

func (e *NodeConfigEdit) validate() error {
	e.Name = strings.ToLower(strings.TrimSpace(e.Name))
	if err := validLabel(e.Name); err != nil {
		return inputErr("name", e.Name, err)
	}
	e.Bioregion = strings.TrimSpace(e.Bioregion)
	if err := validText(e.Bioregion, maxText); err != nil {
		return inputErr("bioregion", e.Bioregion, err)
	}
	e.Location = strings.TrimSpace(e.Location)
	if e.Location != "" {
		if _, _, err := ParseLatLon(e.Location); err != nil {
			return inputErr("location", e.Location, err)
		}
	}
	return nil
}

// ParseSensorAttachment decodes and validates a sensor attachment from a form.
func ParseSensorAttachment(v url.Values) (SensorAttachment, error) {
	s := SensorAttachment{Driver: v.Get("driver"), Bus: v.Get("bus"), Label: v.Get("label"),
		Measures: v.Get("measures"), Location: v.Get("location")}
	if a := strings.TrimSpace(v.Get("address")); a != "" {
		n, err := strconv.ParseUint(a, 0, 16)
		if err != nil {
			return s, inputErr("address", a, errors.New("want an I²C address like 0x76"))
		}
		s.Address = uint16(n)
	}
	return s, s.validate()
}

func (s *SensorAttachment) validate() error {
	s.Driver = strings.ToLower(strings.TrimSpace(s.Driver))
	if !slices.Contains(SensorDrivers, s.Driver) {
		return inputErr("driver", s.Driver, fmt.Errorf("unknown driver, want one of %s", strings.Join(SensorDrivers, ", ")))
	}
	s.Bus = strings.TrimSpace(s.Bus)
	if err := validBus(s.Bus, s.Driver); err != nil {
		return inputErr("bus", s.Bus, err)
	}
	switch s.Driver {
	case "ds18b20", "simulated":
	default:
		if s.Address < 0x03 || s.Address > 0x77 {
			return inputErr("address", fmt.Sprintf("%#x", s.Address), errors.New("I²C addresses are 0x03 to 0x77"))
		}
	}
	for _, f := range []struct{ name, v *string }{{ptr("label"), &s.Label}, {ptr("measures"), &s.Measures}, {ptr("location"), &s.Location}} {
		*f.v = strings.TrimSpace(*f.v)
		if err := validText(*f.v, maxText); err != nil {
			return inputErr(*f.name, *f.v, err)
		}
	}
	if s.Label == "" {
		return inputErr("label", "", errors.New("required"))
	}
	return nil
}

func ptr(s string) *string { return &s }

func validBus(bus, driver string) error {
	if driver == "simulated" {
		if bus == "" || bus == "sim" {
			return nil
		}
		return errors.New(`a simulated sensor has bus "sim" or none`)
	}
	if driver == "ds18b20" {
		if bus == "w1" || bus == "1-wire" || bus == "onewire" {
			return nil
		}
		return errors.New(`the DS18B20 is on the 1-wire bus "w1"`)
	}
	n := strings.TrimPrefix(strings.TrimPrefix(bus, "/dev/"), "i2c-")
	if _, err := strconv.ParseUint(n, 10, 8); err != nil {
		return errors.New(`want an I²C bus like "1", "i2c-1" or "/dev/i2c-1"`)
	}
	return nil
}

// ParseInviteAcceptance decodes and validates an invite acceptance from a form.
func ParseInviteAcceptance(v url.Values) (InviteAcceptance, error) {
	a := InviteAcceptance{Code: v.Get("code")}
	return a, a.validate()
}

func (a *InviteAcceptance) validate() error {
	// Invite codes are base32/base64(url) text, possibly wrapped or dashed;
	// provisioning verifies the signature, we only keep junk out.
	a.Code = strings.Join(strings.Fields(a.Code), "")
	if a.Code == "" {
		return inputErr("code", "", errors.New("required"))
	}
	if len(a.Code) > maxInvite {
		return inputErr("code", a.Code[:16]+"…", fmt.Errorf("longer than %d characters", maxInvite))
	}
	for i, r := range a.Code {
		if !(r < utf8.RuneSelf && (isAlnum(byte(r)) || strings.ContainsRune("-_=+/.:", r))) {
			return inputErr("code", a.Code, fmt.Errorf("character %q at %d is not part of an invite code", r, i))
		}
	}
	return nil
}

// ParseReversalApproval decodes and validates a reversal approval from a form.
func ParseReversalApproval(v url.Values) (ReversalApproval, error) {
	r := ReversalApproval{ID: v.Get("id"), Reason: v.Get("reason")}
	return r, r.validate()
}

func (r *ReversalApproval) validate() error {
	r.ID = strings.TrimSpace(r.ID)
	if r.ID == "" || len(r.ID) > 128 {
		return inputErr("id", r.ID, errors.New("want the ID of a pending reversal"))
	}
	for i := 0; i < len(r.ID); i++ {
		if !isAlnum(r.ID[i]) && !strings.ContainsRune("-_:.", rune(r.ID[i])) {
			return inputErr("id", r.ID, fmt.Errorf("character %q at %d not allowed", r.ID[i], i))
		}
	}
	r.Reason = strings.TrimSpace(r.Reason)
	if err := validText(r.Reason, maxText*5); err != nil {
		return inputErr("reason", r.Reason, err)
	}
	return nil
}

// ParseChatForm decodes the chat box's form (no JavaScript): one user message.
func ParseChatForm(v url.Values) (ChatRequest, error) {
	c := ChatRequest{Model: v.Get("model"), Messages: []ChatMessage{{Role: "user", Content: v.Get("message")}}}
	return c, c.validate()
}

func (c *ChatRequest) validate() error {
	c.Model = strings.TrimSpace(c.Model)
	if err := validText(c.Model, maxText); err != nil {
		return inputErr("model", c.Model, err)
	}
	if len(c.Messages) == 0 {
		return inputErr("messages", "", errors.New("no message"))
	}
	if len(c.Messages) > maxChatTurns {
		return inputErr("messages", strconv.Itoa(len(c.Messages)), fmt.Errorf("more than %d turns", maxChatTurns))
	}
	total := 0
	for i, m := range c.Messages {
		switch m.Role {
		case "user", "assistant", "system":
		default:
			return inputErr(fmt.Sprintf("messages[%d].role", i), m.Role, errors.New(`want "user", "assistant" or "system"`))
		}
		if !utf8.ValidString(m.Content) {
			return inputErr(fmt.Sprintf("messages[%d].content", i), "", errors.New("not UTF-8"))
		}
		total += len(m.Content)
	}
	if strings.TrimSpace(c.Messages[len(c.Messages)-1].Content) == "" {
		return inputErr("message", "", errors.New("empty"))
	}
	if total > maxChatLength {
		return inputErr("messages", "", fmt.Errorf("longer than %d bytes in total", maxChatLength))
	}
	return nil
}

type validator interface{ validate() error }

// DecodeJSON decodes one JSON object of type T from r (at most 64 KiB,
// unknown fields refused) and validates it. T is one of the action inputs
// or ChatRequest.
func DecodeJSON[T any, PT interface {
	*T
	validator
}](r io.Reader) (T, error) {
	var v T
	b, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		return v, fmt.Errorf("read body: %w", err)
	}
	if len(b) > maxBody {
		return v, fmt.Errorf("%w: body longer than %d bytes", ErrBadInput, maxBody)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, fmt.Errorf("%w: JSON body: %v", ErrBadInput, err)
	}
	if dec.More() {
		return v, fmt.Errorf("%w: JSON body: data after the object", ErrBadInput)
	}
	return v, PT(&v).validate()
}

// ParseLatLon parses "lat,lon" in decimal degrees.
func ParseLatLon(s string) (lat, lon float64, err error) {
	a, b, ok := strings.Cut(s, ",")
	if !ok {
		return 0, 0, errors.New(`want "latitude,longitude", e.g. "46.52,6.63"`)
	}
	lat, err1 := strconv.ParseFloat(strings.TrimSpace(a), 64)
	lon, err2 := strconv.ParseFloat(strings.TrimSpace(b), 64)
	if err1 != nil || err2 != nil || math.IsNaN(lat) || math.IsNaN(lon) {
		return 0, 0, errors.New("latitude and longitude must be decimal numbers")
	}
	if lat < -90 || lat > 90 || lon < -180 || lon > 180 {
		return 0, 0, errors.New("latitude must be within ±90 and longitude within ±180")
	}
	return lat, lon, nil
}

func validLabel(s string) error {
	if s == "" {
		return errors.New("required")
	}
	if len(s) > 63 {
		return errors.New("longer than 63 characters")
	}
	if s[0] == '-' || s[len(s)-1] == '-' {
		return errors.New("must not start or end with a hyphen")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("character %q at %d: use only a-z, 0-9 and '-'", c, i)
		}
	}
	return nil
}

func validText(s string, max int) error {
	if len(s) > max {
		return fmt.Errorf("longer than %d bytes", max)
	}
	if !utf8.ValidString(s) {
		return errors.New("not UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("control character %U", r)
		}
	}
	return nil
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func inputErr(field, value string, err error) error {
	if len(value) > 40 {
		value = value[:40] + "…"
	}
	return fmt.Errorf("%w: %s %q: %v", ErrBadInput, field, value, err)
}
