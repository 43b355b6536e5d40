package lanpage_test

import (
	"bytes"
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/univrs/hypha/appliance/lanpage"
)

// FuzzForms feeds arbitrary url-encoded bodies to every form decoder: no
// panic, errors wrap ErrBadInput, and what is accepted is valid.
func FuzzForms(f *testing.F) {
	for _, s := range []string{
		"name=riverbend-2&bioregion=Upper+Sa%C3%B4ne&location=47.3%2C5.05",
		"name=-bad-&location=91,0",
		"driver=bme280&bus=%2Fdev%2Fi2c-1&address=0x76&label=Air&measures=air",
		"driver=ds18b20&bus=w1&label=Soil",
		"driver=ina219&bus=1&address=0x1000&label=x",
		"code=HYPHA-INVITE-3c7d91e2a4b6f8%0A-abcdef",
		"id=rev-51&reason=timed+out",
		"model=qwen&message=hello",
		"name=%00&label=%FF%FE",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		v, err := url.ParseQuery(body)
		if err != nil {
			return
		}
		check := func(err error) {
			if err != nil && !errors.Is(err, lanpage.ErrBadInput) {
				t.Fatalf("error %v does not wrap ErrBadInput", err)
			}
		}
		if e, err := lanpage.ParseNodeConfigEdit(v); err == nil {
			if e.Name == "" || len(e.Name) > 63 || strings.Trim(e.Name, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
				t.Fatalf("accepted name %q", e.Name)
			}
			if !utf8.ValidString(e.Bioregion) {
				t.Fatalf("accepted bioregion %q", e.Bioregion)
			}
		} else {
			check(err)
		}
		if s, err := lanpage.ParseSensorAttachment(v); err == nil {
			if s.Label == "" || (s.Driver != "ds18b20" && s.Driver != "simulated" && (s.Address < 3 || s.Address > 0x77)) {
				t.Fatalf("accepted sensor %+v", s)
			}
		} else {
			check(err)
		}
		if a, err := lanpage.ParseInviteAcceptance(v); err == nil {
			if a.Code == "" || strings.ContainsAny(a.Code, " \n\t<>\"'") {
				t.Fatalf("accepted invite %q", a.Code)
			}
		} else {
			check(err)
		}
		_, err = lanpage.ParseReversalApproval(v)
		check(err)
		if c, err := lanpage.ParseChatForm(v); err == nil {
			if len(c.Messages) != 1 || strings.TrimSpace(c.Messages[0].Content) == "" {
				t.Fatalf("accepted chat %+v", c)
			}
		} else {
			check(err)
		}
	})
}

// FuzzDecodeJSON feeds arbitrary bytes to the JSON decoders of the actions
// and the chat box.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{
		`{"name":"riverbend-2","bioregion":"x","location":"1,2"}`,
		`{"driver":"bme280","bus":"1","address":118,"label":"Air"}`,
		`{"code":"abc-def"}`,
		`{"id":"rev-51"}`,
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
		`{"messages":[{"role":"user","content":"hi"}]} {}`,
		`{"address":-1}`,
		`[`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(err error) {
			if err != nil && !errors.Is(err, lanpage.ErrBadInput) {
				t.Fatalf("error %v does not wrap ErrBadInput", err)
			}
		}
		_, err := lanpage.DecodeJSON[lanpage.NodeConfigEdit](bytes.NewReader(b))
		check(err)
		_, err = lanpage.DecodeJSON[lanpage.SensorAttachment](bytes.NewReader(b))
		check(err)
		_, err = lanpage.DecodeJSON[lanpage.InviteAcceptance](bytes.NewReader(b))
		check(err)
		_, err = lanpage.DecodeJSON[lanpage.ReversalApproval](bytes.NewReader(b))
		check(err)
		if c, err := lanpage.DecodeJSON[lanpage.ChatRequest](bytes.NewReader(b)); err == nil {
			if len(c.Messages) == 0 || len(c.Messages) > 64 {
				t.Fatalf("accepted %d messages", len(c.Messages))
			}
			for _, m := range c.Messages {
				if m.Role != "user" && m.Role != "assistant" && m.Role != "system" {
					t.Fatalf("accepted role %q", m.Role)
				}
			}
		} else {
			check(err)
		}
	})
}

// FuzzParsePasswordHash: the hash comes from the provisioned config.
func FuzzParsePasswordHash(f *testing.F) {
	for _, s := range []string{
		"$argon2id$v=19$m=65536,t=3,p=2$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhcw",
		"$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		"$2b$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",
		"$argon2id$v=19$m=1,t=0,p=0$$",
		"$2a$99$",
		"plain",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := lanpage.ParsePasswordHash(s)
		if err != nil {
			if !errors.Is(err, lanpage.ErrBadPasswordHash) {
				t.Fatalf("error %v does not wrap ErrBadPasswordHash", err)
			}
			return
		}
		if strings.HasPrefix(s, "$argon2id$") && strings.Contains(s, "m=65536") {
			return // checking would take the fuzzer's whole budget
		}
		if strings.HasPrefix(s, "$argon2id$") {
			h.Check("x") // bounded parameters: must return
		}
	})
}

// FuzzParseChatStream: the chat endpoint's stream is parsed on the box.
func FuzzParseChatStream(f *testing.F) {
	for _, s := range []string{
		"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n",
		": comment\nevent: x\ndata: {\"error\":{\"message\":\"overloaded\"}}\n\n",
		"{\"choices\":[{\"message\":{\"content\":\"whole\"}}]}",
		"data: {\"choices\":[{\"delta\":{\"content\":\n",
		"garbage line\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		total := 0
		err := lanpage.ParseChatStream(bytes.NewReader(b), func(s string) error {
			total += len(s)
			return nil
		})
		if total > len(b) {
			t.Fatalf("produced %d bytes of content from %d bytes of stream", total, len(b))
		}
		_ = err
	})
}
