package daemon

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tidemark/tidemark/repair"
)

// The control API, under /v1/ (JSON in and out; docs/operations.md lists
// every path, body and error):
//
//	GET   /v1/status                                   what /status returns
//	GET   /v1/runs[?limit=N]                           runs of every namespace
//	GET   /v1/namespaces/{ns}/runs[?limit=N]           runs of one namespace
//	GET   /v1/namespaces/{ns}/runs/{run}               one run ("current": the unfinished full run)
//	POST  /v1/namespaces/{ns}/runs                     start a run now (body StartRequest)
//	POST  /v1/namespaces/{ns}/runs/{run}/pause         hold it (every process working on it)
//	POST  /v1/namespaces/{ns}/runs/{run}/resume        let it work again
//	POST  /v1/namespaces/{ns}/runs/{run}/abort         stop it for good (leases released, run abandoned)
//	PATCH /v1/namespaces/{ns}/runs/{run}               change intensity and rows_per_second (body TuneRequest)
//	GET   /v1/hints                                    hint replay per region
//
// Mutating requests need the bearer token (http.token_file or
// http.token_env): a missing or wrong one is 401 and changes nothing;
// without a configured token they are refused with 403.

// APIError is the body of every API error.
type APIError struct {
	Error string `json:"error"`
}

// TuneRequest is the body of PATCH /v1/namespaces/{ns}/runs/{run}.
type TuneRequest struct {
	Intensity     *float64 `json:"intensity,omitempty"`
	RowsPerSecond *float64 `json:"rows_per_second,omitempty"`
}

// RunsResponse is the body of the run listings.
type RunsResponse struct {
	Runs []RunView `json:"runs"`
}

// HintsResponse is the body of GET /v1/hints.
type HintsResponse struct {
	Regions []HintView `json:"regions"`
}

// apiTimeout bounds one API request's work against Cassandra.
const apiTimeout = 30 * time.Second

// maxBody bounds a request body.
const maxBody = 1 << 16

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, APIError{Error: err.Error()})
}

// errorCode maps an error to its HTTP status and the control metric's
// result.
func errorCode(err error) (int, string) {
	switch {
	case errors.Is(err, errBadRequest):
		return http.StatusBadRequest, "invalid"
	case errors.Is(err, errNoRun):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, errRunEnded), errors.Is(err, errConflict), errors.Is(err, repair.ErrScopeMismatch):
		return http.StatusConflict, "conflict"
	case errors.Is(err, ErrUnreachable), errors.Is(err, ErrRefused), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable, "error"
	}
	return http.StatusInternalServerError, "error"
}

// authorized checks the bearer token of a mutating request, answering
// 401 or 403 itself when it fails.
func (d *Daemon) authorized(w http.ResponseWriter, r *http.Request, action string) bool {
	if d.token == "" {
		d.dmetrics.action(action, "forbidden")
		writeError(w, http.StatusForbidden, errors.New("the control API is disabled: configure a bearer token with http.token_file or http.token_env"))
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(d.token)) != 1 {
		d.dmetrics.action(action, "unauthorized")
		w.Header().Set("WWW-Authenticate", `Bearer realm="repaird"`)
		msg := "missing bearer token: send Authorization: Bearer <the token in http.token_file or http.token_env>"
		if ok {
			msg = "wrong bearer token"
		}
		writeError(w, http.StatusUnauthorized, errors.New(msg))
		return false
	}
	return true
}

// decode reads a JSON body (an empty body is the zero value); unknown
// fields are errors.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: body: %v", errBadRequest, err)
	}
	return nil
}

func limitParam(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return 5, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 100 {
		return 0, fmt.Errorf("%w: limit %q must be a number from 0 to 100", errBadRequest, s)
	}
	return n, nil
}

func (d *Daemon) routeAPI(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, http.StatusOK, d.Status()) })
	mux.HandleFunc("GET /v1/hints", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, HintsResponse{Regions: d.hintViews()})
	})
	list := func(w http.ResponseWriter, r *http.Request, names []string) {
		limit, err := limitParam(r)
		if err != nil {
			writeError(w, http.StatusBadRequest, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
		defer cancel()
		out := RunsResponse{Runs: []RunView{}}
		for _, ns := range names {
			runs, err := d.listRuns(ctx, ns, limit)
			if err != nil {
				code, _ := errorCode(err)
				writeError(w, code, err)
				return
			}
			out.Runs = append(out.Runs, runs...)
		}
		writeJSON(w, http.StatusOK, out)
	}
	mux.HandleFunc("GET /v1/runs", func(w http.ResponseWriter, r *http.Request) { list(w, r, d.cfg.Names()) })
	mux.HandleFunc("GET /v1/namespaces/{ns}/runs", func(w http.ResponseWriter, r *http.Request) {
		ns := r.PathValue("ns")
		if _, ok := d.cfg.Namespace(ns); !ok {
			writeError(w, http.StatusNotFound, fmt.Errorf("namespace %q is not configured (namespaces: %v)", ns, d.cfg.Names()))
			return
		}
		list(w, r, []string{ns})
	})
	mux.HandleFunc("GET /v1/namespaces/{ns}/runs/{run}", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
		defer cancel()
		ns := r.PathValue("ns")
		store, run, err := d.findRun(ctx, ns, r.PathValue("run"))
		if err != nil {
			code, _ := errorCode(err)
			writeError(w, code, err)
			return
		}
		writeJSON(w, http.StatusOK, d.runView(ctx, store, ns, run, true))
	})
	mux.HandleFunc("POST /v1/namespaces/{ns}/runs", func(w http.ResponseWriter, r *http.Request) {
		if !d.authorized(w, r, "start") {
			return
		}
		var req StartRequest
		if err := decode(r, &req); err != nil {
			d.dmetrics.action("start", "invalid")
			writeError(w, http.StatusBadRequest, err)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
		defer cancel()
		v, begun, err := d.start(ctx, r.PathValue("ns"), req)
		if err != nil {
			code, result := errorCode(err)
			d.dmetrics.action("start", result)
			writeError(w, code, err)
			return
		}
		d.dmetrics.action("start", "ok")
		code := http.StatusCreated
		if !begun {
			code = http.StatusAccepted
		}
		writeJSON(w, code, v)
	})
	steer := func(action string, dir func(r *http.Request) (repair.Directive, error)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !d.authorized(w, r, action) {
				return
			}
			di, err := dir(r)
			if err == nil {
				ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
				defer cancel()
				var v RunView
				if v, err = d.control(ctx, r.PathValue("ns"), r.PathValue("run"), di); err == nil {
					d.dmetrics.action(action, "ok")
					writeJSON(w, http.StatusOK, v)
					return
				}
			}
			code, result := errorCode(err)
			d.dmetrics.action(action, result)
			writeError(w, code, err)
		}
	}
	state := func(s repair.RunState) func(*http.Request) (repair.Directive, error) {
		return func(*http.Request) (repair.Directive, error) { return repair.Directive{State: s}, nil }
	}
	mux.HandleFunc("POST /v1/namespaces/{ns}/runs/{run}/pause", steer("pause", state(repair.StatePaused)))
	mux.HandleFunc("POST /v1/namespaces/{ns}/runs/{run}/resume", steer("resume", state(repair.StateRunning)))
	mux.HandleFunc("POST /v1/namespaces/{ns}/runs/{run}/abort", steer("abort", state(repair.StateAborted)))
	mux.HandleFunc("PATCH /v1/namespaces/{ns}/runs/{run}", steer("tune", func(r *http.Request) (repair.Directive, error) {
		var t TuneRequest
		if err := decode(r, &t); err != nil {
			return repair.Directive{}, err
		}
		if t.Intensity == nil && t.RowsPerSecond == nil {
			return repair.Directive{}, fmt.Errorf("%w: set intensity and/or rows_per_second", errBadRequest)
		}
		return repair.Directive{Intensity: t.Intensity, RowsPerSecond: t.RowsPerSecond}, nil
	}))
}
