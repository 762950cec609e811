/** Request and status shapes of block jobs (block-commit, block-pull), as the API carries them. */

export interface BlockCommitRequest {
  disk: string;
  /** The image to merge down (default: the active image). */
  top?: string;
  /** The image to merge into (default: the backing file of `top`). */
  base?: string;
  /** Bytes per second the job copies at most (0 or absent: unlimited). */
  rate_limit?: number;
}

export interface BlockPullRequest {
  disk: string;
  /** Keep this image (and what is below it) as the backing file; absent: pull everything. */
  base?: string;
  rate_limit?: number;
}

export interface JobCancelRequest {
  id: string;
}

export type BlockJobState = 'running' | 'pivoting' | 'completed' | 'failed' | 'cancelled';

export interface BlockJobInfo {
  id: string;
  type: 'commit' | 'pull';
  disk: string;
  state: BlockJobState;
  /** Bytes examined so far and in all. */
  done: number;
  total: number;
  /** Images the job merges from and into (commit) or stops at (pull). */
  top: string;
  base: string | null;
  started: string;
  finished?: string;
  error?: string;
  /** Guest I/O hold at the final switch (active commit pivot), ms. */
  pivot_pause_ms?: number;
  /** Bytes copied per second over the job's life, once finished. */
  bytes_per_second?: number;
}
