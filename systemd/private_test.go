package systemd

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	sd "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// fakeSystemd answers the calls read on c as systemd does on its private
// socket: StopUnit with a job path, then (in the same write) a change of a
// unit and the job's JobRemoved; ResetFailedUnit with NoSuchUnit. It stops
// answering (and closes c) at a call of the unit "hang.service".
func fakeSystemd(t *testing.T, c net.Conn) {
	defer c.Close()
	for job := uint32(1); ; job++ {
		msg, err := dbus.DecodeMessage(c)
		if err != nil {
			return
		}
		unit, _ := msg.Body[0].(string)
		if unit == "hang.service" {
			time.Sleep(50 * time.Millisecond)
			return
		}
		var out []byte
		add := func(m *dbus.Message) {
			var b bytesBuffer
			if err := m.EncodeTo(&b, binary.LittleEndian); err != nil {
				t.Error(err)
			}
			out = append(out, b...)
		}
		switch msg.Headers[dbus.FieldMember].Value() {
		case "StopUnit":
			path := dbus.ObjectPath("/org/freedesktop/systemd1/job/" + string(rune('0'+job)))
			add(&dbus.Message{Type: dbus.TypeMethodReply, Headers: map[dbus.HeaderField]dbus.Variant{
				dbus.FieldReplySerial: dbus.MakeVariant(msg.Serial()), dbus.FieldSignature: dbus.MakeVariant(dbus.SignatureOf(path))}, Body: []any{path}})
			body := []any{"org.freedesktop.systemd1.Unit", map[string]dbus.Variant{"ActiveState": dbus.MakeVariant("inactive"), "SubState": dbus.MakeVariant("dead")}, []string{}}
			add(&dbus.Message{Type: dbus.TypeSignal, Headers: map[dbus.HeaderField]dbus.Variant{
				dbus.FieldPath: dbus.MakeVariant(dbus.ObjectPath(unitPathPrefix + "/tenement_2dapi_40a_2eservice")), dbus.FieldInterface: dbus.MakeVariant("org.freedesktop.DBus.Properties"),
				dbus.FieldMember: dbus.MakeVariant("PropertiesChanged"), dbus.FieldSignature: dbus.MakeVariant(dbus.SignatureOf(body...))}, Body: body})
			jr := []any{job, path, unit, "done"}
			add(&dbus.Message{Type: dbus.TypeSignal, Headers: map[dbus.HeaderField]dbus.Variant{
				dbus.FieldPath: dbus.MakeVariant(dbus.ObjectPath("/org/freedesktop/systemd1")), dbus.FieldInterface: dbus.MakeVariant("org.freedesktop.systemd1.Manager"),
				dbus.FieldMember: dbus.MakeVariant("JobRemoved"), dbus.FieldSignature: dbus.MakeVariant(dbus.SignatureOf(jr...))}, Body: jr})
		case "ResetFailedUnit":
			add(&dbus.Message{Type: dbus.TypeError, Headers: map[dbus.HeaderField]dbus.Variant{
				dbus.FieldReplySerial: dbus.MakeVariant(msg.Serial()), dbus.FieldErrorName: dbus.MakeVariant("org.freedesktop.systemd1.NoSuchUnit"),
				dbus.FieldSignature: dbus.MakeVariant(dbus.SignatureOf(""))}, Body: []any{"Unit " + unit + " not loaded."}})
		}
		if _, err := c.Write(out); err != nil {
			return
		}
	}
}

type bytesBuffer []byte

func (b *bytesBuffer) Write(p []byte) (int, error) { *b = append(*b, p...); return len(p), nil }

// The removal's calls over the private connection: a job's result reaches
// its waiter although the JobRemoved follows the answer at once, changes
// read in between still reach the pump, an error answer is the dbus.Error
// isNoSuchUnit knows, and a connection that breaks fails the call in
// flight instead of leaving it waiting.
func TestPrivateCalls(t *testing.T) {
	client, server := net.Pipe()
	go fakeSystemd(t, server)
	pc := newPrivateConn(client, bufio.NewReader(client))
	raw := make(chan *sd.PropertiesUpdate, 16)
	done := make(chan error, 1)
	go func() {
		err := pc.readLoop(signalFilter{raw: raw, errs: make(chan error, 1)})
		pc.close(err) // as readPrivate does
		done <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m := &Manager{}
	m.priv.Store(pc)
	for i := 0; i < 3; i++ {
		if err := m.wait(ctx, "tenement-api-b:01-a.slice", "stop", func(ch chan<- string) (int, error) {
			return m.calls().StopUnitContext(ctx, "tenement-api-b:01-a.slice", "replace", ch)
		}); err != nil {
			t.Fatalf("stop %d: %v", i, err)
		}
	}
	if len(raw) != 3 {
		t.Errorf("%d changes reached the pump, want 3", len(raw))
	}
	if u := <-raw; u.UnitName != "tenement-api@a.service" || u.Changed["ActiveState"].Value() != "inactive" {
		t.Errorf("change %+v", u)
	}
	err := m.calls().ResetFailedUnitContext(ctx, "tenement-api@a.socket")
	if !isNoSuchUnit(err) {
		t.Errorf("reset: %v, want NoSuchUnit", err)
	}
	t0 := time.Now()
	_, err = m.calls().StopUnitContext(ctx, "hang.service", "replace", make(chan string, 1))
	if !errors.Is(err, errPrivateClosed) {
		t.Errorf("a call on a connection that broke: %v, want errPrivateClosed", err)
	}
	if ctx.Err() != nil {
		t.Errorf("the call waited %s, until its context ended", time.Since(t0))
	}
	<-done
	if _, err := pc.call(ctx, "StopUnit", nil, "x", "replace"); !errors.Is(err, errPrivateClosed) {
		t.Errorf("a call after the close: %v, want errPrivateClosed", err)
	}
}
