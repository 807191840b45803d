package main

import (
	"os"

	"github.com/tenhq/ten/client"
	"github.com/tenhq/ten/config"
)

// loadConfig loads --config or the tenement.toml found upward from the working directory.
func (g *Globals) loadConfig() (*config.Config, error) {
	path := g.Config
	if path == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		path, err = config.Find(wd)
		if err != nil {
			return nil, err
		}
	}
	return config.Load(path)
}

// dataDir is --data-dir, else the config's data_dir, else ./tenement-data.
func (g *Globals) dataDir() string {
	if g.DataDir != "" {
		return g.DataDir
	}
	if c, err := g.loadConfig(); err == nil {
		return c.DataDirAbs()
	}
	return "tenement-data"
}

func (g *Globals) client() *client.Client {
	return client.New(g.Server, client.TokenFrom(g.Token, g.dataDir()))
}
