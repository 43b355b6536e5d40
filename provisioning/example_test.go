package provisioning_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/univrs/hypha/provisioning"
)

// The steward's laptop creates the community, the image builder bakes it
// into /perm, and the box loads and verifies it at boot.
func Example() {
	tmp, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(tmp)
	communityDir := filepath.Join(tmp, "riverbend")
	permDir := filepath.Join(tmp, "perm")

	c, steward, err := provisioning.Init(communityDir, provisioning.InitOptions{
		Name: "Riverbend", Bioregion: "Lower Valley", Password: "a long steward password",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := provisioning.BakePerm(communityDir, permDir); err != nil {
		fmt.Println(err)
		return
	}
	box, err := provisioning.LoadCommunity(permDir) // at boot, on the box
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(box.Manifest.Name, box.ID() == c.ID(), box.PSK == c.PSK)

	// An invite for a new box, valid for three days.
	token, _ := provisioning.NewInvite(c.Manifest, steward, provisioning.RoleBox, nil, "school", 72*time.Hour, time.Now())
	inv, err := provisioning.VerifyInvite(box.Manifest, token, time.Now())
	fmt.Println(inv.Role, inv.Name, err)
	_, err = provisioning.VerifyInvite(box.Manifest, token, time.Now().Add(73*time.Hour))
	fmt.Println(errors.Is(err, provisioning.ErrExpired))

	_, err = provisioning.LoadCommunity(filepath.Join(tmp, "blank"))
	fmt.Println(errors.Is(err, provisioning.ErrNotProvisioned))
	// Output:
	// Riverbend true true
	// box school <nil>
	// true
	// true
}
