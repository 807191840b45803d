// Package cgroups is the cgroup side of a box: it finds the host's cgroup
// hierarchies (v1, hybrid or v2) and this process's place in each, makes
// and removes a box's root cgroup in every one, moves processes into them,
// lists the cgroup file systems a box mounts, and cleans up what boxes of
// dead owners left. Linux only.
package cgroups
