package lambdarun

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Runtime API header names, as aws-lambda-go's runtime_api_client.go spells them.
const (
	headerRequestID     = "Lambda-Runtime-Aws-Request-Id"
	headerDeadlineMS    = "Lambda-Runtime-Deadline-Ms"
	headerFunctionARN   = "Lambda-Runtime-Invoked-Function-Arn"
	headerTraceID       = "Lambda-Runtime-Trace-Id"
	headerErrorType     = "Lambda-Runtime-Function-Error-Type"
	trailerErrorBody    = "Lambda-Runtime-Function-Error-Body"
	headerExtensionID   = "Lambda-Extension-Identifier"
	headerExtensionName = "Lambda-Extension-Name"
)

// routes serves the Runtime API and the part of the Extensions API that
// lambda.WithEnableSIGTERM uses (register, then an event/next that never returns).
func (p *process) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /2018-06-01/runtime/invocation/next", p.handleNext)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/response", p.handleResponse)
	mux.HandleFunc("POST /2018-06-01/runtime/invocation/{id}/error", p.handleError)
	mux.HandleFunc("POST /2018-06-01/runtime/init/error", p.handleInitError)
	mux.HandleFunc("POST /2020-01-01/extension/register", p.handleExtensionRegister)
	mux.HandleFunc("GET /2020-01-01/extension/event/next", p.handleExtensionNext)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Count the handler unless the process is gone and its handlers are being
		// waited for: a WaitGroup must not go up from zero during Wait.
		p.hmu.Lock()
		if p.hclosed {
			p.hmu.Unlock()
			return
		}
		p.handlers.Add(1)
		p.hmu.Unlock()
		defer p.handlers.Done()
		mux.ServeHTTP(w, r)
	})
}

// handleNext blocks until an invocation is queued and hands it over: the event as
// body and its metadata as headers. Client context and Cognito identity are omitted,
// as for an invocation without them.
func (p *process) handleNext(w http.ResponseWriter, r *http.Request) {
	p.markReady()
	select {
	case inv := <-p.f.queue:
		inv.taken <- time.Now()
		p.f.mu.Lock()
		inv.proc = p
		p.f.mu.Unlock()
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set(headerRequestID, inv.id)
		h.Set(headerDeadlineMS, strconv.FormatInt(inv.deadline.UnixMilli(), 10))
		h.Set(headerFunctionARN, p.f.arn)
		h.Set(headerTraceID, inv.traceID)
		w.WriteHeader(http.StatusOK)
		w.Write(inv.event)
	case <-r.Context().Done():
	case <-p.exited:
	}
	// Nothing else ends the wait: an empty answer would reach a live runtime as an
	// invocation without an id. Close stops the process, which ends the request.
}

func (p *process) handleResponse(w http.ResponseWriter, r *http.Request) {
	body, tooLarge, err := readBody(r)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "InvalidRequest", "read body: "+err.Error())
		return
	}
	out := outcome{payload: body, at: time.Now()}
	if tooLarge {
		out.err = &FunctionError{
			Type:    "Function.ResponseSizeTooLarge",
			Message: fmt.Sprintf("Response payload size exceeded maximum allowed payload size (%d bytes).", maxPayload),
		}
		out.payload = mustJSON(out.err)
	} else if e := streamError(r); e != nil {
		// aws-lambda-go reports a handler's response reader that failed midway in
		// trailers, after part of the body was sent.
		out.err = e
		out.payload = mustJSON(e)
	}
	status, code := p.f.answer(p, r.PathValue("id"), out)
	if status != http.StatusAccepted {
		writeAPIError(w, status, code, "request "+r.PathValue("id"))
		return
	}
	if tooLarge {
		writeAPIError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", out.err.Message)
		return
	}
	writeAccepted(w)
}

func (p *process) handleError(w http.ResponseWriter, r *http.Request) {
	body, _, err := readBody(r)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "InvalidRequest", "read body: "+err.Error())
		return
	}
	e, payload := parseErrorBody(body, r.Header.Get(headerErrorType))
	status, code := p.f.answer(p, r.PathValue("id"), outcome{payload: payload, err: &FunctionError{Type: e.Type, Message: e.Message}, at: time.Now()})
	if status != http.StatusAccepted {
		writeAPIError(w, status, code, "request "+r.PathValue("id"))
		return
	}
	writeAccepted(w)
}

// handleInitError records the runtime's report; awaitInit turns it into an *InitError
// and stops the process, as Lambda does.
func (p *process) handleInitError(w http.ResponseWriter, r *http.Request) {
	body, _, err := readBody(r)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "InvalidRequest", "read body: "+err.Error())
		return
	}
	select {
	case <-p.ready:
		writeAPIError(w, http.StatusForbidden, "InvalidStateTransition", "init/error after init")
		return
	default:
	}
	e, _ := parseErrorBody(body, r.Header.Get(headerErrorType))
	p.mu.Lock()
	if p.initErr == nil {
		p.initErr = &InitError{Type: e.Type, Message: e.Message}
	}
	p.mu.Unlock()
	p.failOnce.Do(func() { close(p.initFail) })
	writeAccepted(w)
}

func (p *process) handleExtensionRegister(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	if r.Header.Get(headerExtensionName) == "" {
		writeAPIError(w, http.StatusForbidden, "Extension.InvalidExtensionName", "missing "+headerExtensionName)
		return
	}
	p.mu.Lock()
	p.extensions++
	p.mu.Unlock()
	w.Header().Set(headerExtensionID, newRequestID())
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{
		"functionName":    p.f.cfg.FunctionName,
		"functionVersion": "$LATEST",
		"handler":         handlerName(p.f.cfg),
	})
}

// handleExtensionNext never delivers an event: the only extension a Go function
// registers (aws-lambda-go's SIGTERM helper) subscribes to none.
func (p *process) handleExtensionNext(w http.ResponseWriter, r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-p.exited:
	}
}

// answer records the runtime's answer for invocation id and returns the status for the
// runtime: 202, 400 for an id this process was not given, 403 for a second answer.
func (f *Function) answer(p *process, id string, out outcome) (status int, code string) {
	f.mu.Lock()
	inv := f.inflight[id]
	switch {
	case inv == nil || inv.proc != p:
		f.mu.Unlock()
		return http.StatusBadRequest, "InvalidRequestID"
	case inv.responded:
		f.mu.Unlock()
		return http.StatusForbidden, "InvalidStateTransition"
	}
	inv.responded = true
	f.mu.Unlock()
	p.markAnswer(out.at)
	inv.done <- out // buffered, and only one answer gets here
	return http.StatusAccepted, ""
}

// readBody reads up to Lambda's payload limit; tooLarge reports a longer body.
func readBody(r *http.Request) (body []byte, tooLarge bool, err error) {
	body, err = io.ReadAll(io.LimitReader(r.Body, maxPayload+1))
	if err != nil {
		return nil, false, err
	}
	if len(body) > maxPayload {
		// Read the rest too, so the runtime gets the 413 instead of a reset connection.
		_, err = io.Copy(io.Discard, r.Body)
		return nil, true, err
	}
	return body, false, nil
}

// streamError decodes the Lambda-Runtime-Function-Error-Type/-Body trailers.
func streamError(r *http.Request) *FunctionError {
	typ := r.Trailer.Get(headerErrorType)
	if typ == "" {
		return nil
	}
	e := &FunctionError{Type: typ}
	if raw, err := base64.StdEncoding.DecodeString(r.Trailer.Get(trailerErrorBody)); err == nil {
		var body FunctionError
		if json.Unmarshal(raw, &body) == nil {
			e.Message = body.Message
		}
	}
	return e
}

// parseErrorBody reads {"errorMessage","errorType",...}; the type falls back to the
// Lambda-Runtime-Function-Error-Type header, then to "Unhandled". payload is the body
// when it is JSON, as Lambda passes it on, else the parsed error.
func parseErrorBody(body []byte, headerType string) (FunctionError, []byte) {
	var e FunctionError
	valid := json.Unmarshal(body, &e) == nil
	if e.Type == "" {
		e.Type = headerType
	}
	if e.Type == "" {
		e.Type = "Unhandled"
	}
	if valid {
		return e, body
	}
	return e, mustJSON(&e)
}

func writeAccepted(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	io.WriteString(w, `{"status":"OK"}`)
}

func writeAPIError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(mustJSON(&FunctionError{Type: typ, Message: msg}))
}
