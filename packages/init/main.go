// Command init is the first process of a Hypha appliance (/gokrazy/init).
// It lets gokrazy mount the file systems and set up the machine, then
// supervises every program listed in /etc/hypha/services.json. gokrazy
// restarts a program that exits with anything but 0 or 125.
package main

import (
	"log"
	"os"
	"os/exec"

	"github.com/gokrazy/gokrazy"

	"github.com/univrs/hypha/images/services"
)

// buildTimestamp is set by the image builder with -ldflags -X.
var buildTimestamp = "unknown"

func main() {
	if err := gokrazy.Boot(buildTimestamp); err != nil {
		log.Fatal(err)
	}
	b, err := os.ReadFile(services.Path)
	if err != nil {
		log.Fatal(err)
	}
	list, err := services.Decode(b)
	if err != nil {
		log.Fatal(err)
	}
	svcs := make([]*gokrazy.Service, 0, len(list.Services))
	for _, s := range list.Services {
		cmd := exec.Command(s.Path, s.Args...)
		cmd.Env = append(os.Environ(), s.Env...)
		switch {
		case s.DontStart:
			svcs = append(svcs, gokrazy.NewStoppedService(cmd))
		case s.WaitForClock:
			svcs = append(svcs, gokrazy.NewWaitForClockService(cmd))
		default:
			svcs = append(svcs, gokrazy.NewService(cmd))
		}
	}
	if err := gokrazy.SuperviseServices(svcs); err != nil {
		log.Fatal(err)
	}
	select {}
}
