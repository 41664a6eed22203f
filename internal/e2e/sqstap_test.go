package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"
)

// sqsTap stands between the refresher and moto's SQS (AWS_ENDPOINT_URL_SQS points at it).
// moto 5.2 honours DelaySeconds on the wall clock, with no way to move its clock, and the
// sweep spreads its messages over 15 minutes: the tap takes DelaySeconds off each
// SendMessageBatch entry before moto sees it and records it by the MessageId moto answers,
// so that the test delivers each message after its delay on a virtual clock instead.
// Everything else passes through unchanged.
type sqsTap struct {
	URL string

	t    *testing.T
	mu   sync.Mutex
	sent map[string]tapEntry // by MessageId, since the last take
}

// tapEntry is one message the refresher sent.
type tapEntry struct {
	body  string
	delay time.Duration
}

type tapKey struct{}

func newSQSTap(t *testing.T, motoURL string) *sqsTap {
	target, err := url.Parse(motoURL)
	if err != nil {
		t.Fatal(err)
	}
	tap := &sqsTap{t: t, sent: map[string]tapEntry{}}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Header.Del("Accept-Encoding") // read moto's answer as sent
			if pr.In.Header.Get("X-Amz-Target") != "AmazonSQS.SendMessageBatch" {
				return
			}
			body, entries, err := stripDelays(pr.In.Body)
			if err != nil {
				t.Errorf("sqs tap: SendMessageBatch request: %v", err)
				return
			}
			pr.Out.Body = io.NopCloser(bytes.NewReader(body))
			pr.Out.ContentLength = int64(len(body))
			pr.Out.Header.Set("Content-Length", strconv.Itoa(len(body)))
			pr.Out = pr.Out.WithContext(context.WithValue(pr.Out.Context(), tapKey{}, entries))
		},
		ModifyResponse: func(resp *http.Response) error {
			entries, ok := resp.Request.Context().Value(tapKey{}).(map[string]tapEntry)
			if !ok || resp.StatusCode != http.StatusOK {
				return nil
			}
			raw, err := io.ReadAll(resp.Body)
			if err != nil {
				return err
			}
			resp.Body = io.NopCloser(bytes.NewReader(raw))
			var out struct {
				Successful []struct{ Id, MessageId string }
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				t.Errorf("sqs tap: SendMessageBatch answer: %v", err)
				return nil
			}
			tap.mu.Lock()
			defer tap.mu.Unlock()
			for _, s := range out.Successful {
				tap.sent[s.MessageId] = entries[s.Id]
			}
			return nil
		},
	}
	srv := httptest.NewServer(proxy)
	t.Cleanup(srv.Close)
	tap.URL = srv.URL
	return tap
}

// stripDelays removes DelaySeconds from a SendMessageBatch request body and returns the
// new body and each entry's message and delay by entry Id.
func stripDelays(r io.Reader) ([]byte, map[string]tapEntry, error) {
	var in map[string]json.RawMessage
	if err := json.NewDecoder(r).Decode(&in); err != nil {
		return nil, nil, err
	}
	var entries []map[string]json.RawMessage
	if err := json.Unmarshal(in["Entries"], &entries); err != nil {
		return nil, nil, err
	}
	got := map[string]tapEntry{}
	for _, e := range entries {
		var id, body string
		var delay int64
		_ = json.Unmarshal(e["Id"], &id)
		_ = json.Unmarshal(e["MessageBody"], &body)
		if d, ok := e["DelaySeconds"]; ok {
			if err := json.Unmarshal(d, &delay); err != nil {
				return nil, nil, err
			}
		}
		got[id] = tapEntry{body: body, delay: time.Duration(delay) * time.Second}
		delete(e, "DelaySeconds")
	}
	var err error
	if in["Entries"], err = json.Marshal(entries); err != nil {
		return nil, nil, err
	}
	out, err := json.Marshal(in)
	return out, got, err
}

// take returns the messages sent since the last take, by MessageId.
func (tap *sqsTap) take() map[string]tapEntry {
	tap.mu.Lock()
	defer tap.mu.Unlock()
	sent := tap.sent
	tap.sent = map[string]tapEntry{}
	return sent
}
