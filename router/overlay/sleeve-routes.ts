/**
 * The forwarder's routes for the sleeve: the mesh speaks of peer names, the data plane of short
 * IDs. Next hops and broadcast trees are translated once per topology state and cached.
 */
import type { PeerName } from '../mesh'
import type { Routes } from './forwarder'

/** The parts of the mesh's topology and route table the routes adapter reads. */
export interface MeshRouting {
  selfName(): PeerName
  /** Every known peer's short ID (undefined until it has one). */
  shortIds(): Iterable<[PeerName, number | undefined]>
  /** Data-plane unicast next hops (established symmetric links). */
  unicast(): Map<PeerName, PeerName>
  /** Children of `source`'s broadcast tree at us. */
  broadcast(source: PeerName): PeerName[]
}

/**
 * Forwarder routes over short IDs from the mesh's names. Cached per topology state: call
 * `invalidate()` when the topology changes (the mesh's onPeersChanged). `usable(hop)` says
 * whether the sleeve can reach a neighbour now (its address is known).
 */
export class SleeveRoutes implements Routes {
  private nameOf: Map<number, PeerName> | undefined
  private shortOf: Map<PeerName, number> | undefined
  private readonly bcast = new Map<number, number[]>()
  private uni = new Map<number, number | undefined>()

  /**
   * `usable(hop)`: the sleeve can reach that neighbour now; `viaDatapath(hop)`: the datapath
   * carries it instead (a middle host hands sleeve peers' frames for it to the datapath).
   */
  constructor(
    private readonly mesh: MeshRouting,
    private readonly usable: (hop: number) => boolean,
    private readonly viaDatapath: (hop: number) => boolean = () => false,
  ) {}

  invalidate(): void {
    this.nameOf = this.shortOf = undefined
    this.bcast.clear()
    this.uni.clear()
  }

  private maps(): { nameOf: Map<number, PeerName>; shortOf: Map<PeerName, number> } {
    if (!this.nameOf || !this.shortOf) {
      this.nameOf = new Map()
      this.shortOf = new Map()
      for (const [name, id] of this.mesh.shortIds()) {
        if (id === undefined) continue
        this.nameOf.set(id, name)
        this.shortOf.set(name, id)
      }
    }
    return { nameOf: this.nameOf, shortOf: this.shortOf }
  }

  unicastNextHop(dst: number): number | undefined {
    const hop = this.rawNextHop(dst)
    return hop !== undefined && this.usable(hop) ? hop : undefined
  }

  datapathNextHop(dst: number): number | undefined {
    const hop = this.rawNextHop(dst)
    return hop !== undefined && this.viaDatapath(hop) ? hop : undefined
  }

  private rawNextHop(dst: number): number | undefined {
    let hop = this.uni.get(dst)
    if (hop === undefined && !this.uni.has(dst)) {
      const { nameOf, shortOf } = this.maps()
      const name = nameOf.get(dst)
      const hopName = name === undefined ? undefined : this.mesh.unicast().get(name)
      hop = hopName === undefined || hopName === this.mesh.selfName() ? undefined : shortOf.get(hopName)
      this.uni.set(dst, hop)
    }
    return hop
  }

  broadcastNextHops(src: number): readonly number[] {
    return this.tree(src).filter(this.usable)
  }

  broadcastDatapathHops(src: number): readonly number[] {
    return this.tree(src).filter(this.viaDatapath)
  }

  private tree(src: number): number[] {
    let hops = this.bcast.get(src)
    if (!hops) {
      const { nameOf, shortOf } = this.maps()
      const name = nameOf.get(src)
      hops = []
      if (name !== undefined) {
        for (const n of this.mesh.broadcast(name)) {
          const id = shortOf.get(n)
          if (id !== undefined) hops.push(id)
        }
      }
      this.bcast.set(src, hops)
    }
    return hops
  }
}
