// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title medvault ledger anchors
/// @notice One entry per medvault block: its hash and the Merkle root of its
/// events, appended with compare-and-swap on the head so members cannot fork
/// the chain. The block itself (header and events, no personal data) travels
/// in the Anchored event, so any member can read it back and check it against
/// the hash stored here.
contract Anchor {
    struct Entry {
        bytes32 blockHash;
        bytes32 root;
        uint64 count;
        address anchorer;
    }

    address public immutable admin;
    mapping(address => bool) public isAnchorer;
    Entry[] private entries;

    event AnchorerSet(address indexed who, bool allowed);
    event Anchored(uint256 indexed height, bytes32 indexed blockHash, bytes32 root, uint64 count, bytes32 prev, bytes block);

    error NotAdmin(address caller);
    error NotAnchorer(address caller);
    error StaleHead(uint256 height, uint256 expectedHeight);
    error BrokenLink(bytes32 prev, bytes32 head);

    constructor() {
        admin = msg.sender;
        isAnchorer[msg.sender] = true;
        emit AnchorerSet(msg.sender, true);
    }

    function setAnchorer(address who, bool allowed) external {
        if (msg.sender != admin) revert NotAdmin(msg.sender);
        isAnchorer[who] = allowed;
        emit AnchorerSet(who, allowed);
    }

    /// @notice Appends the block at `height` if it is the next height and
    /// `prev` is the current head's block hash (zero for the first block).
    function anchor(uint256 height, bytes32 prev, bytes32 blockHash, bytes32 root, uint64 count, bytes calldata block)
        external
    {
        if (!isAnchorer[msg.sender]) revert NotAnchorer(msg.sender);
        if (height != entries.length) revert StaleHead(height, entries.length);
        bytes32 head = entries.length == 0 ? bytes32(0) : entries[entries.length - 1].blockHash;
        if (prev != head) revert BrokenLink(prev, head);
        entries.push(Entry(blockHash, root, count, msg.sender));
        emit Anchored(height, blockHash, root, count, prev, block);
    }

    /// @notice The number of anchored blocks (the next height).
    function size() external view returns (uint256) {
        return entries.length;
    }

    function entry(uint256 height) external view returns (Entry memory) {
        return entries[height];
    }
}
