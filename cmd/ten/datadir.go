package main

import "github.com/tenhq/ten/datadir"

// DatadirCmd is `ten datadir`, run by systemd before an instance starts
// when settings.data_dir holds the instances' data.
type DatadirCmd struct {
	Dir      string `required:"" help:"The instance's data directory {data_dir}/{name}/{id}."`
	OwnerOf  string `name:"owner-of" help:"Give the directory the owner of this one (the unit's state directory under DynamicUser)."`
	Traverse string `help:"data_dir: it and the directories below it on the way get o+x."`
}

// Run prepares the directory.
func (c *DatadirCmd) Run() error {
	return datadir.Prepare(datadir.Options{Dir: c.Dir, OwnerOf: c.OwnerOf, Traverse: c.Traverse})
}
