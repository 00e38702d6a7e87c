// vcsim for the tvdeploy lab: govmomi's vCenter simulator with the inventory the lab site file
// names, on loopback over TLS with a certificate the lab makes, and one accepted login.
//
// Build (Debian's govmomi 0.24 source, no modules, no network):
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o vcsim main.go
//
// It prints one line "READY <url>" on stdout (and writes the URL to -url-file) once it serves.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io/ioutil"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

type options struct {
	listen, cert, key, user, passwordFile, urlFile, dsDir string
	datacenter, cluster, datastore, folder, network       string
	template                                              string
	hosts, latencyMS                                      int
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.listen, "listen", "127.0.0.1:0", "loopback address:port to serve on")
	flag.StringVar(&o.cert, "cert", "", "PEM certificate file (required)")
	flag.StringVar(&o.key, "key", "", "PEM private key file (required)")
	flag.StringVar(&o.user, "user", "tvdeploy@vsphere.local", "the one accepted user name")
	flag.StringVar(&o.passwordFile, "password-file", "", "file holding the one accepted password (else $VCSIM_PASSWORD)")
	flag.StringVar(&o.urlFile, "url-file", "", "write the service URL (without credentials) here")
	flag.StringVar(&o.dsDir, "datastore-dir", "", "directory backing the datastore (required)")
	flag.StringVar(&o.datacenter, "datacenter", "tv-dc", "datacenter name")
	flag.StringVar(&o.cluster, "cluster", "tv-cluster", "cluster name")
	flag.StringVar(&o.datastore, "datastore", "tv-ds", "datastore name")
	flag.StringVar(&o.folder, "folder", "trueverit", "VM folder for the site's VMs (created empty)")
	flag.StringVar(&o.network, "network", "VM Network", "network of the template's NIC (the simulator's default)")
	flag.StringVar(&o.template, "template", "trueverit-debian12", "VM template name")
	flag.IntVar(&o.hosts, "hosts", 3, "hosts in the cluster")
	flag.IntVar(&o.latencyMS, "latency-ms", 0, "added latency per API request, in milliseconds")
	flag.Parse()
	if o.cert == "" || o.key == "" || o.dsDir == "" {
		log.Fatal("-cert, -key and -datastore-dir are required")
	}
	return o
}

func password(o options) string {
	if o.passwordFile != "" {
		b, err := ioutil.ReadFile(o.passwordFile)
		if err != nil {
			log.Fatalf("password file: %v", err)
		}
		return strings.TrimRight(string(b), "\r\n")
	}
	if p := os.Getenv("VCSIM_PASSWORD"); p != "" {
		return p
	}
	log.Fatal("no password: give -password-file or $VCSIM_PASSWORD")
	return ""
}

// populate renames the model's datacenter and cluster, adds the datastore (backed by a lab
// directory, not /tmp), the site folder and the template, all through the in-process client.
func populate(ctx context.Context, c *vim25.Client, o options) error {
	finder := find.NewFinder(c, false)
	dc, err := finder.Datacenter(ctx, "DC0")
	if err != nil {
		return err
	}
	finder.SetDatacenter(dc)
	cluster, err := finder.ClusterComputeResource(ctx, "DC0_C0")
	if err != nil {
		return err
	}
	if err := rename(ctx, dc.Common, o.datacenter); err != nil {
		return err
	}
	if err := rename(ctx, cluster.Common, o.cluster); err != nil {
		return err
	}
	hosts, err := cluster.Hosts(ctx)
	if err != nil {
		return err
	}
	for _, h := range hosts {
		dss, err := h.ConfigManager().DatastoreSystem(ctx)
		if err != nil {
			return err
		}
		if _, err := dss.CreateLocalDatastore(ctx, o.datastore, o.dsDir); err != nil {
			return err
		}
	}
	folders, err := dc.Folders(ctx)
	if err != nil {
		return err
	}
	if _, err := folders.VmFolder.CreateFolder(ctx, o.folder); err != nil {
		return err
	}
	templates, err := folders.VmFolder.CreateFolder(ctx, "templates")
	if err != nil {
		return err
	}
	pool, err := cluster.ResourcePool(ctx)
	if err != nil {
		return err
	}
	return createTemplate(ctx, c, finder, templates, pool, hosts[0], o)
}

func rename(ctx context.Context, obj object.Common, name string) error {
	task, err := obj.Rename(ctx, name)
	if err != nil {
		return err
	}
	return task.Wait(ctx)
}

func createTemplate(ctx context.Context, c *vim25.Client, finder *find.Finder, folder *object.Folder,
	pool *object.ResourcePool, host *object.HostSystem, o options) error {
	net, err := finder.Network(ctx, o.network)
	if err != nil {
		return err
	}
	backing, err := net.EthernetCardBackingInfo(ctx)
	if err != nil {
		return err
	}
	vmPath := "[" + o.datastore + "]"
	var devices object.VirtualDeviceList
	scsi, _ := devices.CreateSCSIController("pvscsi")
	devices = append(devices, scsi)
	disk := devices.CreateDisk(scsi.(types.BaseVirtualController), types.ManagedObjectReference{},
		vmPath+" "+path.Join(o.template, "disk1.vmdk"))
	disk.CapacityInKB = 16 * 1024 * 1024 // 16 GiB: nodes grow it by the site file's disk_gb
	nic, err := devices.CreateEthernetCard("vmxnet3", backing)
	if err != nil {
		return err
	}
	devices = append(devices, disk, nic)
	spec := types.VirtualMachineConfigSpec{
		Name:       o.template,
		GuestId:    string(types.VirtualMachineGuestOsIdentifierDebian11_64Guest),
		NumCPUs:    1,
		MemoryMB:   1024,
		Annotation: "Debian 12 template inspected by the security department (lab stand-in)",
		Files:      &types.VirtualMachineFileInfo{VmPathName: vmPath},
		// A marker of some other site: a VM cloned from this template must not be taken for ours.
		ExtraConfig: []types.BaseOptionValue{
			&types.OptionValue{Key: "tvdeploy.site-id", Value: "template-origin-not-a-site"},
		},
	}
	spec.DeviceChange, _ = devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
	task, err := folder.CreateVM(ctx, spec, pool, host)
	if err != nil {
		return err
	}
	info, err := task.WaitForResult(ctx, nil)
	if err != nil {
		return err
	}
	vm := object.NewVirtualMachine(c, info.Result.(types.ManagedObjectReference))
	return vm.MarkAsTemplate(ctx)
}

// serialized runs one request at a time: govmomi 0.24's CloneVM_Task hands the template's
// device objects to the clone, so concurrent requests on clones of one template race on shared
// objects (seen: clones losing their disk). Latency is added outside the lock, so concurrent
// clients still overlap their waits and a benchmark measures concurrency, not the simulator.
func serialized(h http.Handler) http.Handler {
	var mu sync.Mutex
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// withLatency adds a fixed delay to every request (govmomi's own DelayConfig applies inside the
// serialized section, so it would not overlap).
func withLatency(h http.Handler, ms int) http.Handler {
	if ms <= 0 {
		return h
	}
	d := time.Duration(ms) * time.Millisecond
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(d)
		h.ServeHTTP(w, r)
	})
}

func main() {
	o := parseFlags()
	pass := password(o)
	cert, err := tls.LoadX509KeyPair(o.cert, o.key)
	if err != nil {
		log.Fatalf("certificate: %v", err)
	}

	model := simulator.VPX()
	model.Datacenter = 1
	model.Cluster = 1
	model.ClusterHost = o.hosts
	model.Host = 0
	model.Portgroup = 0
	model.Datastore = 0
	model.Machine = 0
	if err := model.Create(); err != nil {
		log.Fatalf("model: %v", err)
	}
	defer model.Remove()

	ctx := context.Background()
	client, err := vim25.NewClient(ctx, model.Service)
	if err != nil {
		log.Fatalf("client: %v", err)
	}
	if err := populate(ctx, client, o); err != nil {
		log.Fatalf("inventory: %v", err)
	}
	// The simulator serves plain HTTP on a throw-away loopback port that is closed at once; its
	// handler is served below on the lab's port, over TLS, behind two wrappers.
	// With Listen.User set to anything but simulator.DefaultLogin, only this user+password is
	// accepted (SessionManager.validLogin); the default accepts any non-empty password.
	model.Service.Listen = &url.URL{Host: "127.0.0.1:0", User: url.UserPassword(o.user, pass)}
	internal := model.Service.NewServer()
	handler := internal.Config.Handler
	internal.Listener.Close()

	listener, err := net.Listen("tcp", o.listen)
	if err != nil {
		log.Fatalf("listen: %v", err)
	}
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	server := &http.Server{Handler: withLatency(serialized(handler), o.latencyMS), TLSConfig: tlsConfig}
	go func() {
		if err := server.Serve(tls.NewListener(listener, tlsConfig)); err != http.ErrServerClosed {
			log.Fatalf("serve: %v", err)
		}
	}()
	defer server.Close()

	public := url.URL{Scheme: "https", Host: listener.Addr().String(), Path: "/sdk"}
	if o.urlFile != "" {
		if err := ioutil.WriteFile(o.urlFile+".tmp", []byte(public.String()+"\n"), 0o644); err != nil {
			log.Fatalf("url file: %v", err)
		}
		if err := os.Rename(o.urlFile+".tmp", o.urlFile); err != nil {
			log.Fatalf("url file: %v", err)
		}
	}
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(w, "READY %s\n", public.String())
	_ = w.Flush()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
