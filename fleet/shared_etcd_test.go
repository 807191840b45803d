package fleet

import (
	"context"
	"testing"
	"time"
)

// Weights, failed marks and token records written by one client show in
// another client's watched view; a move clears the failed mark, an
// unplace the weight and the mark; a token record is never overwritten.
func TestSharedStateInView(t *testing.T) {
	url := startEtcd(t)
	ctx := testCtx(t)
	a, b := newClient(t, url), newClient(t, url)
	w := NewWatcher(b, nil)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	go w.Run(wctx)
	wait := func(what string, ok func(View) bool) View {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if v, loaded := w.View(); loaded && ok(v) {
				return v
			}
		}
		v, _ := w.View()
		t.Fatalf("%s: not seen within 10s; view %+v", what, v)
		return v
	}
	if _, err := PlaceInstance(ctx, a, "web:a", 0, ""); err == nil {
		t.Fatal("placed with no live node")
	}
	if _, err := a.Put(ctx, PlacementKey("web:a"), `{"node":"n1"}`); err != nil {
		t.Fatal(err)
	}
	if err := SetWeight(ctx, a, "web:a", 30); err != nil {
		t.Fatal(err)
	}
	if err := SetWeight(ctx, a, "web:a", 101); err == nil {
		t.Fatal("weight 101 accepted")
	}
	if err := SetFailed(ctx, a, "web:a", "crashed 3 times"); err != nil {
		t.Fatal(err)
	}
	if err := PutToken(ctx, a, "0123456789abcdef", []byte(`{"id":"0123456789abcdef"}`)); err != nil {
		t.Fatal(err)
	}
	if err := PutToken(ctx, a, "0123456789abcdef", []byte(`{"id":"other"}`)); err == nil {
		t.Fatal("a token record was overwritten")
	}
	if err := PutToken(ctx, a, "../nodes/n1", []byte(`{}`)); err == nil {
		t.Fatal("a token id outside tokens/ accepted")
	}
	v := wait("weight, mark, token", func(v View) bool {
		return v.Weights["web:a"] == 30 && v.Failed["web:a"] == "crashed 3 times" && string(v.Tokens["0123456789abcdef"]) == `{"id":"0123456789abcdef"}`
	})
	if wt, failed := w.Shared("web:a"); wt != 30 || failed == "" {
		t.Fatalf("Shared(web:a) = %d, %q", wt, failed)
	}
	moved, err := Reassign(ctx, a, Move{Instance: "web:a", From: v.Placements["web:a"], To: "n2"})
	if err != nil || !moved {
		t.Fatalf("reassign: %v %v", moved, err)
	}
	wait("move clears the failed mark", func(v View) bool {
		return v.Placements["web:a"].Node == "n2" && v.Failed["web:a"] == "" && v.Weights["web:a"] == 30
	})
	if existed, err := Unplace(ctx, a, "web:a"); err != nil || !existed {
		t.Fatalf("unplace: %v %v", existed, err)
	}
	wait("unplace clears the weight", func(v View) bool {
		_, hasW := v.Weights["web:a"]
		_, hasP := v.Placements["web:a"]
		return !hasW && !hasP
	})
	if existed, err := DeleteToken(ctx, a, "0123456789abcdef"); err != nil || !existed {
		t.Fatalf("delete token: %v %v", existed, err)
	}
	wait("token deleted", func(v View) bool { return len(v.Tokens) == 0 })
}
