// Share-group membership: who is in which share group, for DescribeShareGroups and liveness. Pure and
// deterministic (time and new member ids are inputs). It is not needed for correctness (the partition
// leaders' acquisition locks are), so it lives in memory only: after a controller restart every
// heartbeat answers UNKNOWN_MEMBER_ID and the members rejoin with epoch 0.
import { ErrorCode } from "@runnel/proto";

/** Share groups with at least one member at most; a join that would create one more is refused (THROTTLED). */
export const maxShareGroups = 10_000;
/** Members of one share group at most; a join beyond it is refused (THROTTLED). */
export const maxMembersPerShareGroup = 1_000;
/** The epoch a member sends to join, and to leave. */
export const shareJoinEpoch = 0;
export const shareLeaveEpoch = -1;
/** The epoch a member gets when it joins. Share groups have no assignment to reconcile, so it stays. */
export const shareMemberFirstEpoch = 1;

export interface ShareMemberRecord {
  readonly memberId: string;
  readonly memberEpoch: number;
  readonly clientId: string;
  readonly subscribedTopicNames: readonly string[];
  readonly lastHeartbeatMs: number;
}

export interface ShareMembershipConfig {
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
}

export interface ShareHeartbeatInput {
  groupId: string;
  memberId: string;
  memberEpoch: number;
  subscribedTopicNames: readonly string[];
  clientId: string;
  /** The id a joining member gets (the adapter generates a UUID). */
  newMemberId: string;
}

export interface ShareHeartbeatOutcome {
  errorCode: ErrorCode;
  errorMessage: string;
  memberId: string;
  memberEpoch: number;
  heartbeatIntervalMs: number;
  /** What happened, for the adapter's log. */
  event: "joined" | "left" | "heartbeat" | "refused";
}

export interface ExpiredShareMember {
  groupId: string;
  memberId: string;
}

export class ShareMembership {
  /** group id -> member id -> member. A group without members is removed. */
  private readonly groups = new Map<string, Map<string, ShareMemberRecord>>();

  constructor(readonly config: ShareMembershipConfig) {}

  heartbeat(input: ShareHeartbeatInput, nowMs: number): ShareHeartbeatOutcome {
    const { groupId } = input;
    const members = this.groups.get(groupId);
    const answer = (errorCode: ErrorCode, errorMessage: string, event: ShareHeartbeatOutcome["event"], memberId = input.memberId, memberEpoch = input.memberEpoch): ShareHeartbeatOutcome => ({
      errorCode,
      errorMessage,
      memberId,
      memberEpoch,
      heartbeatIntervalMs: this.config.heartbeatIntervalMs,
      event,
    });

    if (input.memberEpoch === shareLeaveEpoch) {
      // Leaving twice (a retried leave) is not an error: the member is gone either way.
      if (members?.delete(input.memberId) === true && members.size === 0) this.groups.delete(groupId);
      return answer(ErrorCode.ERROR_CODE_NONE, "", "left", input.memberId, shareLeaveEpoch);
    }

    if (input.memberEpoch === shareJoinEpoch) {
      // A member that rejoins under its own id keeps it (its locks on the brokers are held by that id).
      const existing = input.memberId === "" ? undefined : members?.get(input.memberId);
      const memberId = existing?.memberId ?? input.newMemberId;
      if (existing === undefined) {
        if (members === undefined && this.groups.size >= maxShareGroups) {
          return answer(ErrorCode.THROTTLED, `too many share groups (at most ${maxShareGroups}); share group ${groupId} cannot be created now`, "refused", input.memberId, 0);
        }
        if (members !== undefined && members.size >= maxMembersPerShareGroup) {
          return answer(ErrorCode.THROTTLED, `share group ${groupId} has ${members.size} members (at most ${maxMembersPerShareGroup})`, "refused", input.memberId, 0);
        }
      }
      let group = members;
      if (group === undefined) this.groups.set(groupId, (group = new Map()));
      group.set(memberId, {
        memberId,
        memberEpoch: shareMemberFirstEpoch,
        clientId: input.clientId,
        subscribedTopicNames: [...input.subscribedTopicNames],
        lastHeartbeatMs: nowMs,
      });
      return answer(ErrorCode.ERROR_CODE_NONE, "", "joined", memberId, shareMemberFirstEpoch);
    }

    const member = members?.get(input.memberId);
    if (members === undefined || member === undefined) {
      return answer(ErrorCode.UNKNOWN_MEMBER_ID, `share group ${groupId} has no member ${input.memberId} (it left, its session expired, or the controller restarted); join again with member epoch 0`, "refused");
    }
    if (input.memberEpoch !== member.memberEpoch) {
      return answer(ErrorCode.FENCED_MEMBER_EPOCH, `member ${member.memberId} of share group ${groupId} sent epoch ${input.memberEpoch}; its epoch is ${member.memberEpoch}; join again with member epoch 0`, "refused");
    }
    members.set(member.memberId, {
      ...member,
      clientId: input.clientId === "" ? member.clientId : input.clientId,
      // Empty means unchanged: members send their subscription on join only.
      subscribedTopicNames: input.subscribedTopicNames.length === 0 ? member.subscribedTopicNames : [...input.subscribedTopicNames],
      lastHeartbeatMs: nowMs,
    });
    return answer(ErrorCode.ERROR_CODE_NONE, "", "heartbeat", member.memberId, member.memberEpoch);
  }

  /** Removes the members whose last heartbeat is more than a session timeout before nowMs. */
  expire(nowMs: number): ExpiredShareMember[] {
    const expired: ExpiredShareMember[] = [];
    for (const [groupId, members] of this.groups) {
      for (const m of members.values()) {
        if (nowMs - m.lastHeartbeatMs > this.config.sessionTimeoutMs) {
          members.delete(m.memberId);
          expired.push({ groupId, memberId: m.memberId });
        }
      }
      if (members.size === 0) this.groups.delete(groupId);
    }
    return expired;
  }

  /** The live members of a group (empty when none), in join order. */
  members(groupId: string): ShareMemberRecord[] {
    return [...(this.groups.get(groupId)?.values() ?? [])];
  }

  groupIds(): string[] {
    return [...this.groups.keys()];
  }

  get groupCount(): number {
    return this.groups.size;
  }

  get memberCount(): number {
    let n = 0;
    for (const members of this.groups.values()) n += members.size;
    return n;
  }
}
