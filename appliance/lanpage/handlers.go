package lanpage

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// isJSON reports whether the request body is JSON.
func isJSON(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/json"
}

// readForm parses a url-encoded form body of at most 64 KiB.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		return nil, fmt.Errorf("%w: form: %v", ErrBadInput, err)
	}
	return r.PostForm, nil
}

// guard checks the XSRF token of a POST. JSON clients send it in the
// X-XSRF-Token header; forms in the "xsrf" field. It writes 403 and returns
// nil on failure; otherwise it returns the form (nil for JSON bodies).
func (p *page) guard(w http.ResponseWriter, r *http.Request) (url.Values, bool) {
	var form url.Values
	if !isJSON(r) {
		f, err := readForm(w, r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return nil, false
		}
		form = f
	}
	if !p.auth.checkXSRF(r, form.Get("xsrf")) {
		p.cfg.log.Warn("lanpage: POST without a valid XSRF token", "path", r.URL.Path, "client", clientIP(r))
		msg := "missing or invalid XSRF token: reload the page and try again"
		if isJSON(r) || wantsJSON(r) {
			p.jsonError(w, http.StatusForbidden, errors.New(msg))
		} else {
			http.Error(w, msg, http.StatusForbidden)
		}
		return nil, false
	}
	return form, true
}

func (p *page) login(w http.ResponseWriter, r *http.Request) {
	form, ok := p.guard(w, r)
	if !ok {
		return
	}
	if p.auth.hash == nil {
		p.stewardPage(w, r, http.StatusForbidden, "", "No steward password is set on this node; steward actions are disabled.")
		return
	}
	ip := clientIP(r)
	if ok, wait := p.auth.allowLogin(ip); !ok {
		secs := int(wait.Seconds()) + 1
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		p.stewardPage(w, r, http.StatusTooManyRequests, "", fmt.Sprintf("Too many wrong passwords. Try again in %d seconds.", secs))
		return
	}
	password := form.Get("password")
	if isJSON(r) {
		var in struct {
			Password string `json:"password"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&in); err != nil {
			p.jsonError(w, http.StatusBadRequest, fmt.Errorf("%w: JSON body: %v", ErrBadInput, err))
			return
		}
		password = in.Password
	}
	tok, ok := p.auth.login(ip, password)
	if !ok {
		p.cfg.log.Warn("lanpage: wrong steward password", "client", ip)
		if isJSON(r) {
			p.jsonError(w, http.StatusUnauthorized, errors.New("wrong password"))
			return
		}
		p.stewardPage(w, r, http.StatusUnauthorized, "", "Wrong password.")
		return
	}
	p.cfg.log.Info("lanpage: steward logged in", "client", ip)
	http.SetCookie(w, p.auth.sessionCookie(tok, int(p.cfg.sessionTTL.Seconds())))
	if isJSON(r) {
		p.writeJSON(w, map[string]bool{"ok": true})
		return
	}
	http.Redirect(w, r, "/steward", http.StatusSeeOther)
}

func (p *page) logout(w http.ResponseWriter, r *http.Request) {
	if _, ok := p.guard(w, r); !ok {
		return
	}
	p.auth.logout(r)
	http.SetCookie(w, p.auth.sessionCookie("", -1))
	http.Redirect(w, r, "/steward", http.StatusSeeOther)
}

var actionTitles = map[string]string{"node": "Node settings saved.", "sensor": "Sensor attached.",
	"invite": "Invite accepted.", "reversal": "Reversal approved."}

// action runs a steward action: XSRF, then session, then decode, then callback.
func (p *page) action(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("action")
	if _, known := actionTitles[name]; !known {
		http.Error(w, fmt.Sprintf("no steward action %q", name), http.StatusNotFound)
		return
	}
	form, ok := p.guard(w, r)
	if !ok {
		return
	}
	fail := func(status int, err error) {
		if isJSON(r) {
			p.jsonError(w, status, err)
			return
		}
		p.stewardPage(w, r, status, "", err.Error())
	}
	if p.auth.hash == nil {
		fail(http.StatusForbidden, errors.New("no steward password is set on this node; steward actions are disabled"))
		return
	}
	if !p.auth.steward(r) {
		fail(http.StatusUnauthorized, errors.New("log in as steward first"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	var err error
	acts := p.src.Actions
	notAvail := fmt.Errorf("this node cannot %s", map[string]string{"node": "edit its config", "sensor": "attach sensors",
		"invite": "accept invites", "reversal": "approve reversals"}[name])
	switch name {
	case "node":
		var in NodeConfigEdit
		if in, err = decodeAction(r, form, ParseNodeConfigEdit, DecodeJSON[NodeConfigEdit]); err == nil {
			if acts.SetNodeConfig == nil {
				err = notAvail
			} else if err = acts.SetNodeConfig(ctx, in); err != nil {
				err = fmt.Errorf("save node config: %w", err)
			}
		}
	case "sensor":
		var in SensorAttachment
		if in, err = decodeAction(r, form, ParseSensorAttachment, DecodeJSON[SensorAttachment]); err == nil {
			if acts.AttachSensor == nil {
				err = notAvail
			} else if err = acts.AttachSensor(ctx, in); err != nil {
				err = fmt.Errorf("attach sensor: %w", err)
			}
		}
	case "invite":
		var in InviteAcceptance
		if in, err = decodeAction(r, form, ParseInviteAcceptance, DecodeJSON[InviteAcceptance]); err == nil {
			if acts.AcceptInvite == nil {
				err = notAvail
			} else if err = acts.AcceptInvite(ctx, in); err != nil {
				err = fmt.Errorf("accept invite: %w", err)
			}
		}
	case "reversal":
		var in ReversalApproval
		if in, err = decodeAction(r, form, ParseReversalApproval, DecodeJSON[ReversalApproval]); err == nil {
			if acts.ApproveReversal == nil {
				err = notAvail
			} else if err = acts.ApproveReversal(ctx, in); err != nil {
				err = fmt.Errorf("approve reversal: %w", err)
			}
		}
	}
	if err != nil {
		status := http.StatusUnprocessableEntity
		if errors.Is(err, ErrBadInput) {
			status = http.StatusBadRequest
		}
		p.cfg.log.Warn("lanpage: steward action failed", "action", name, "err", err)
		fail(status, err)
		return
	}
	p.cfg.log.Info("lanpage: steward action", "action", name, "client", clientIP(r))
	if isJSON(r) {
		p.writeJSON(w, map[string]bool{"ok": true})
		return
	}
	http.Redirect(w, r, "/steward?done="+name, http.StatusSeeOther)
}

func decodeAction[T any](r *http.Request, form url.Values, parseForm func(url.Values) (T, error), parseJSON func(io.Reader) (T, error)) (T, error) {
	if isJSON(r) {
		return parseJSON(r.Body)
	}
	return parseForm(form)
}

// stewardPage renders the steward view with a message.
func (p *page) stewardPage(w http.ResponseWriter, r *http.Request, status int, flash, errText string) {
	if isJSON(r) || wantsJSON(r) {
		if errText != "" {
			p.jsonError(w, status, errors.New(errText))
		} else {
			p.writeJSON(w, map[string]string{"message": flash})
		}
		return
	}
	m, _ := p.model(r.Context(), "steward", r)
	sm := m.(stewardModel)
	sm.Flash, sm.Error = flash, errText
	p.render(w, r, "steward", sm, status)
}

// chat sends the chat box's conversation to the chat endpoint. JSON clients
// (the page's script) get the reply streamed as server-sent events
// ("data: {"delta":"…"}", then "event: done"); a plain form gets the
// inference page with the whole reply.
func (p *page) chat(w http.ResponseWriter, r *http.Request) {
	form, ok := p.guard(w, r)
	if !ok {
		return
	}
	var req ChatRequest
	var err error
	if isJSON(r) {
		req, err = DecodeJSON[ChatRequest](r.Body)
	} else {
		req, err = ParseChatForm(form)
	}
	streaming := isJSON(r)
	if err == nil && p.cfg.chatURL == "" {
		err = errors.New("no chat endpoint is configured on this node")
	}
	if err != nil {
		if streaming {
			p.jsonError(w, http.StatusBadRequest, err)
			return
		}
		p.chatPage(w, r, &chatResult{Model: req.Model, Error: err.Error()})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Minute)
	defer cancel()
	if !streaming {
		var reply strings.Builder
		err := p.chatUpstream(ctx, req, func(delta string) error { reply.WriteString(delta); return nil })
		res := &chatResult{Model: req.Model, Prompt: req.Messages[len(req.Messages)-1].Content, Reply: reply.String()}
		if err != nil {
			res.Error = err.Error()
		}
		p.chatPage(w, r, res)
		return
	}
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	send := func(event string, v any) error {
		b, _ := json.Marshal(v)
		if event != "" {
			fmt.Fprintf(w, "event: %s\n", event)
		}
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return err
		}
		if fl != nil {
			fl.Flush()
		}
		return nil
	}
	err = p.chatUpstream(ctx, req, func(delta string) error { return send("", map[string]string{"delta": delta}) })
	if err != nil {
		p.cfg.log.Warn("lanpage: chat", "err", err)
		send("error", map[string]string{"error": err.Error()})
		return
	}
	send("done", map[string]bool{"done": true})
}

func (p *page) chatPage(w http.ResponseWriter, r *http.Request, res *chatResult) {
	m, _ := p.model(r.Context(), "inference", r)
	im := m.(inferenceModel)
	im.Chat = res
	status := http.StatusOK
	if res.Error != "" {
		status = http.StatusBadGateway
	}
	p.render(w, r, "inference", im, status)
}

// chatUpstream posts to <chat endpoint>/chat/completions with stream=true and
// calls onDelta with each piece of content.
func (p *page) chatUpstream(ctx context.Context, req ChatRequest, onDelta func(string) error) error {
	body, _ := json.Marshal(map[string]any{"model": req.Model, "messages": req.Messages, "stream": true})
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, p.cfg.chatURL+"/chat/completions", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	hr.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("chat: endpoint answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return ParseChatStream(resp.Body, onDelta)
}

// ParseChatStream reads an OpenAI chat-completions stream (server-sent
// events, "data: {json}" lines ending with "data: [DONE]") and calls onDelta
// with each content delta. A non-streaming JSON answer is accepted too.
func ParseChatStream(r io.Reader, onDelta func(string) error) error {
	type chunk struct {
		Choices []struct {
			Delta   struct{ Content string } `json:"delta"`
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, ":") || strings.HasPrefix(s, "event:") || strings.HasPrefix(s, "id:") {
			continue
		}
		data, isData := strings.CutPrefix(s, "data:")
		data = strings.TrimSpace(data)
		if data == "[DONE]" {
			return nil
		}
		if !isData && !strings.HasPrefix(s, "{") {
			return fmt.Errorf("chat stream line %d: %w: not an SSE data line: %.40q", line, ErrBadInput, s)
		}
		var c chunk
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			return fmt.Errorf("chat stream line %d: %w: %v", line, ErrBadInput, err)
		}
		if c.Error != nil {
			return fmt.Errorf("chat: endpoint error: %s", c.Error.Message)
		}
		for _, ch := range c.Choices {
			text := ch.Delta.Content + ch.Message.Content
			if text == "" {
				continue
			}
			if err := onDelta(text); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("chat stream: %w", err)
	}
	return nil
}
